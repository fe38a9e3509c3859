//! Glyphs for what models write. egui's bundled fonts cover Latin and a few symbols only; text
//! from a model holds emoji, CJK and every other script. Natively, eframe's system font provider
//! (its `system_fonts` feature) finds an installed font for any script, and is asked first. What
//! is left, an emoji on a machine with no emoji font and every emoji in the browser (a canvas
//! has no system fonts), is drawn from a monochrome emoji font bundled here: Noto Emoji, shipped
//! by egui's own font crate, added only for the characters it has.
//!
//! Cost in the browser: the font is 418,804 bytes of the release wasm (6.31 MB), 293,042 of it
//! gzipped (2.55 MB). A CJK font costs far more (Debian's Noto Sans CJK Regular: 15.6 MB
//! gzipped, six times the whole bundle), so the browser shows CJK as gaps; the native console
//! draws it from the system's fonts.

use std::sync::Arc;

use egui::epaint::text::{
    FallbackRequest, FontData, FontFamily, FontInsert, FontPriority, FontProvider, InsertFontFamily,
};
use skrifa::MetadataProvider as _;

/// The name the bundled emoji font is installed under.
const EMOJI_FONT: &str = "runboard-noto-emoji";

/// Noto Emoji is drawn a little large beside egui's text fonts; this matches their height.
const EMOJI_SCALE: f32 = 0.81;

/// Answers for characters no other font has, from the bundled emoji font.
pub struct BundledEmoji {
    font: FontData,
}

impl BundledEmoji {
    fn new() -> Self {
        let font = FontData::from_static(epaint_default_fonts::NOTO_EMOJI_REGULAR).tweak(
            egui::FontTweak {
                scale: EMOJI_SCALE,
                ..Default::default()
            },
        );
        Self { font }
    }

    /// Whether the bundled font has a glyph for `c`.
    pub fn covers(c: char) -> bool {
        skrifa::FontRef::new(epaint_default_fonts::NOTO_EMOJI_REGULAR)
            .is_ok_and(|font| font.charmap().map(c).is_some())
    }
}

impl FontProvider for BundledEmoji {
    fn font_for(&self, request: &FallbackRequest<'_>) -> Option<FontInsert> {
        let first = request.cluster.chars().next()?;
        if !Self::covers(first) {
            return None;
        }
        // Both text families, so a monospace line (the log) gets the same emoji.
        let families = [FontFamily::Proportional, FontFamily::Monospace]
            .into_iter()
            .map(|family| InsertFontFamily {
                family,
                priority: FontPriority::Lowest,
            })
            .collect();
        Some(FontInsert::new(EMOJI_FONT, self.font.clone(), families))
    }
}

/// Installs the bundled emoji fallback after whatever providers the context has (natively,
/// eframe's system fonts, which therefore win when the system has an emoji font).
pub fn install_fonts(ctx: &egui::Context) {
    ctx.add_font_provider(Arc::new(BundledEmoji::new()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_covers_common_emoji_and_leaves_other_scripts_to_the_system() {
        for emoji in ['😊', '🚀', '❤', '👍'] {
            assert!(BundledEmoji::covers(emoji), "{emoji}");
        }
        for other in ['中', '한', 'ไ', 'a'] {
            assert!(!BundledEmoji::covers(other), "{other}");
        }
    }
}

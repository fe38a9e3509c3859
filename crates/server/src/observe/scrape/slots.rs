//! llama.cpp's `GET /slots`: one entry per slot. Newer servers say `is_processing` and give
//! `next_token` (an object, or a list with one); older ones say `state` (0 idle, 1 processing).

use runboard_api::Slot;
use serde_json::Value;

/// The slots of a `/slots` answer; `None` when it is not a list of slots.
pub fn parse_slots(body: &[u8]) -> Option<Vec<Slot>> {
    let Value::Array(items) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    items.iter().map(slot).collect()
}

fn slot(item: &Value) -> Option<Slot> {
    let id = item.get("id")?.as_u64()?;
    let processing = item
        .get("is_processing")
        .and_then(Value::as_bool)
        .or_else(|| item.get("state").and_then(Value::as_u64).map(|s| s != 0))
        .unwrap_or(false);
    let next_token = match item.get("next_token") {
        Some(Value::Array(list)) => list.first(),
        other => other,
    };
    let decoded = next_token
        .and_then(|next| next.get("n_decoded"))
        .or_else(|| item.get("n_decoded"))
        .and_then(Value::as_u64);
    let n_predict = item
        .get("params")
        .and_then(|params| params.get("n_predict"))
        .or_else(|| item.get("n_predict"))
        .and_then(Value::as_i64);
    Some(Slot {
        id,
        processing,
        decoded,
        n_predict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_and_older_slot_shapes() {
        let newer = br#"[
            {"id": 0, "n_ctx": 512, "is_processing": true, "params": {"n_predict": 64},
             "next_token": {"has_next_token": true, "n_remain": 20, "n_decoded": 44}},
            {"id": 1, "is_processing": false, "params": {"n_predict": -1},
             "next_token": [{"n_decoded": 0}]}
        ]"#;
        assert_eq!(
            parse_slots(newer).unwrap(),
            vec![
                Slot {
                    id: 0,
                    processing: true,
                    decoded: Some(44),
                    n_predict: Some(64)
                },
                Slot {
                    id: 1,
                    processing: false,
                    decoded: Some(0),
                    n_predict: Some(-1)
                },
            ]
        );
        let older = br#"[{"id": 3, "state": 1, "n_decoded": 7, "n_predict": 128}]"#;
        assert_eq!(
            parse_slots(older).unwrap(),
            vec![Slot {
                id: 3,
                processing: true,
                decoded: Some(7),
                n_predict: Some(128)
            }]
        );
        assert_eq!(parse_slots(br#"{"error": "slots disabled"}"#), None);
        assert_eq!(parse_slots(b"not json"), None);
    }
}

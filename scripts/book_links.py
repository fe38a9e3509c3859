#!/usr/bin/env python3
"""Checks the links of the built book: every relative link and image inside it names a file
that exists, and every `#fragment` an id on that page. Links to other sites are not followed
(CI has no network beyond the package registries).

Usage: book_links.py BOOK_DIR ; prints each broken link and exits 1 when there is one.
"""
import html.parser
import os
import sys
import urllib.parse


class Page(html.parser.HTMLParser):
    """A page's ids and the links it makes."""

    def __init__(self):
        super().__init__()
        self.ids = set()
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def read(path):
    page = Page()
    with open(path, encoding="utf-8") as file:
        page.feed(file.read())
    return page


def main(book):
    pages = {}
    for folder, _, names in os.walk(book):
        for name in names:
            if name.endswith(".html"):
                path = os.path.normpath(os.path.join(folder, name))
                pages[path] = read(path)
    if not pages:
        print(f"book: no pages under {book}")
        return 1
    broken = 0
    for path, page in sorted(pages.items()):
        # mdBook's not-found page links to the site's root, which only a web server has.
        if os.path.basename(path) == "404.html":
            continue
        for link in page.links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("javascript:"):
                continue
            target = path
            if parts.path:
                target = os.path.normpath(
                    os.path.join(os.path.dirname(path), urllib.parse.unquote(parts.path))
                )
                if os.path.isdir(target):
                    target = os.path.join(target, "index.html")
                if not os.path.exists(target):
                    print(f"book: {os.path.relpath(path, book)} links to {link}: no such file")
                    broken += 1
                    continue
            if parts.fragment and target.endswith(".html"):
                ids = pages[target].ids if target in pages else read(target).ids
                if urllib.parse.unquote(parts.fragment) not in ids:
                    print(f"book: {os.path.relpath(path, book)} links to {link}: no such anchor")
                    broken += 1
    print(f"book: {len(pages)} pages, {broken} broken link(s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

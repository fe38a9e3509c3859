#!/usr/bin/env python3
"""Finds import circles between the files of a Rust source tree (CODE_STYLE.md: no file imports
another that imports it back, directly or round a loop).

A file's imports are the modules its `crate::…`, `super::…` and `self::…` paths name, outside
comments and its `#[cfg(test)]` part, resolved to the longest module path that is a file.
Usage: import_cycles.py DIR… ; prints each circle and exits 1 when there is one.
"""
import os
import re
import sys

PATH = r"[a-z_][a-z_0-9]*(?:::[a-z_][a-z_0-9]*)*"


def modules(root):
    """Module path (a tuple of names) → file, for every `.rs` under `root`."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".rs"):
                continue
            parts = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found[tuple(parts)] = os.path.join(folder, name)
    return found


def imports(module, path, known):
    """The modules a file names, itself and the crate root left out."""
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = "\n".join(line for line in text.split("\n") if not line.strip().startswith("//"))

    def resolve(parts):
        for end in range(len(parts), 0, -1):
            if tuple(parts[:end]) in known:
                return tuple(parts[:end])
        return None

    named = set()
    for found in re.findall(r"crate::(" + PATH + ")", text):
        named.add(resolve(found.split("::")))
    for found in re.findall(r"(?<![:\w])super::(" + PATH + ")", text):
        named.add(resolve(list(module[:-1]) + found.split("::")))
    for found in re.findall(r"(?<![:\w])self::(" + PATH + ")", text):
        named.add(resolve(list(module) + found.split("::")))
    named.discard(None)
    named.discard(module)
    named.discard(())
    return named


def circles(graph):
    """The strongly connected groups of more than one file (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def main(roots):
    failed = False
    for root in roots:
        known = modules(root)
        graph = {module: imports(module, path, known) for module, path in known.items()}
        for group in circles(graph):
            failed = True
            print(f"style: files of {root} import each other in a circle:")
            for module in group:
                for other in sorted(graph[module] & set(group)):
                    print(f"    {'::'.join(module)} -> {'::'.join(other)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

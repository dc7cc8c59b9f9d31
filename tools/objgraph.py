#!/usr/bin/python3
"""objgraph.py OBJECTS: the link graph of a library's object files (A -> B
when A uses a symbol that B defines) and its cycles: strongly connected
components of more than one file. OBJECTS is a directory of .o files or a
static library (.a). Prints each cycle and a summary; exit status 1 when
there is a cycle, 2 when nm fails.

libglidefs is kept a one-way graph (docs/architecture.md): the meson test
'lib_acyclic' runs this over libglidefs_internal.a, so a call from a lower
module back up into a higher one fails the build's tests.

  tools/objgraph.py build/lib/libglidefs_internal.a [--edges]
"""
import os
import subprocess
import sys


def nm_lines(path):
    r = subprocess.run(['nm', path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f'objgraph: nm {path} failed: {r.stderr}')
        sys.exit(2)
    return r.stdout.splitlines()


def symbols(target):
    """{object name: (defined set, undefined set)}"""
    objs = {}
    if os.path.isdir(target):
        for f in sorted(os.listdir(target)):
            if f.endswith('.o'):
                objs[f] = nm_lines(os.path.join(target, f))
    else:  # an archive: nm prints "member.o:" before each member's symbols
        cur = None
        for line in nm_lines(target):
            if line.endswith('.o:'):
                cur = line[:-1]
                objs[cur] = []
            elif cur is not None:
                objs[cur].append(line)
    out = {}
    for o, lines in objs.items():
        d, u = set(), set()
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[0] == 'U':
                u.add(parts[1])
            elif len(parts) == 3 and parts[1] in 'TDBR':
                d.add(parts[2])
        out[o] = (d, u)
    return out


def sccs(graph):
    """Tarjan's strongly connected components, iteratively."""
    index, low, onstack, stack, comps = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        onstack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    onstack.add(w)
                    work.append((w, iter(graph[w])))
                elif w in onstack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    onstack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp))
    return comps


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    syms = symbols(args[0])
    owner = {}
    for o, (d, _) in sorted(syms.items()):
        for s in d:
            owner.setdefault(s, o)
    graph = {o: sorted({owner[s] for s in u if s in owner and owner[s] != o})
             for o, (_, u) in syms.items()}
    name = lambda o: os.path.basename(o[:-2] if o.endswith('.c.o') else o)
    if '--edges' in sys.argv:
        for o in sorted(graph):
            print(f'{name(o)} -> {" ".join(name(t) for t in graph[o])}')
    cycles = [c for c in sccs(graph) if len(c) > 1]
    for c in cycles:
        print('cycle:', ' '.join(name(o) for o in c))
    nedges = sum(len(t) for t in graph.values())
    print(f'{len(graph)} objects, {nedges} edges, {len(cycles)} cycles, '
          f'largest {max([len(c) for c in cycles] or [0])}')
    return 1 if cycles else 0


if __name__ == '__main__':
    sys.exit(main())

"""Labelled 200 bp `coding` and `upstream` regions of a genome, made the way the shared ones were:
long ORFs (ATG..stop, >= 900 nt, longest first, no two overlapping) on either strand of the
first FASTA record. Usage: python benchmarks/make_regions.py GENOME.fa OUT.tsv.gz
"""
import gzip
import random
import sys

from genoseq.fasta import iter_fasta
comp = str.maketrans("ACGTN", "TGCAN")
g = next(iter(iter_fasta(sys.argv[1]))).sequence.upper()
n = len(g); stops = {"TAA", "TAG", "TGA"}
orfs = []
for strand, s in (("+", g), ("-", g.translate(comp)[::-1])):
    for f in range(3):
        start = None
        for i in range(f, n - 2, 3):
            c = s[i:i + 3]
            if c == "ATG" and start is None: start = i
            elif c in stops:
                if start is not None and i + 3 - start >= 900:
                    orfs.append((i + 3 - start, strand, start, i + 3))
                start = None
orfs.sort(reverse=True)
taken = []  # forward-coordinate intervals
def fwd(strand, a, b): return (a, b) if strand == "+" else (n - b, n - a)
def overlaps(a, b): return any(a < y and x < b for x, y in taken)
genes = []
for L, strand, a, b in orfs:
    x, y = fwd(strand, a, b)
    if not overlaps(x, y):
        taken.append((x, y)); genes.append((strand, a, b))
rows = []
for strand, a, b in genes:
    s = g if strand == "+" else g.translate(comp)[::-1]
    if a >= 200:
        ux, uy = fwd(strand, a - 200, a)
        if not overlaps(ux, uy): rows.append((s[a - 200:a], "upstream"))
    mid = a + ((b - a) // 2 // 3) * 3
    rows.append((s[mid:mid + 200], "coding"))
random.Random(0).shuffle(rows)
with gzip.open(sys.argv[2], "wt") as out:
    out.write("sequence\tlabel\n")
    for seq, label in rows: out.write(f"{seq}\t{label}\n")
print(len(genes), "genes", sum(r[1] == "upstream" for r in rows), "upstream", sum(r[1] == "coding" for r in rows), "coding")

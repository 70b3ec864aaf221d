"""Summarise an ncu source-page CSV (--page source --print-source sass): share of warp-state samples
in the prologue, the main loop (the longest backward branch) and the epilogue; per opcode in the loop;
per stall reason. python ncu_source_summary.py SRC.csv"""
import csv, io, sys, re, collections
path=sys.argv[1]
lines=open(path).read().splitlines()
start=[i for i,l in enumerate(lines) if l.startswith('"Address"')][0]
rows=list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
S=[float(r["Warp Stall Sampling (All Samples)"] or 0) for r in rows]
tot=sum(S)
# loops: backward branches
addr=[int(r["Address"],16) if r["Address"].startswith("0x") else int(r["Address"]) for r in rows]
idx={a:i for i,a in enumerate(addr)}
loops=[]
for i,r in enumerate(rows):
    m=re.search(r"BRA\s+(?:P\d,\s*|!P\d,\s*)?(0x[0-9a-f]+)", r["Source"])
    if m:
        t=int(m.group(1),16)
        if t in idx and idx[t]<i: loops.append((idx[t],i))
print("total",tot,"loops",loops)
big=max(loops,key=lambda x:x[1]-x[0])
lo,hi=big
print(f"prologue {sum(S[:lo])/tot:.1%} loop {sum(S[lo:hi+1])/tot:.1%} epilogue {sum(S[hi+1:])/tot:.1%}")
ex=[float(r["Instructions Executed"] or 0) for r in rows]
by=collections.Counter(); byn=collections.Counter()
for i in range(lo,hi+1):
    op=re.sub(r"^@!?U?P\w+\s+","",rows[i]["Source"].strip()).split()[0].split(".")[0]
    by[op]+=S[i]; byn[op]+=1
print("loop samples by opcode:", " ".join(f"{k}:{v/tot:.1%}({byn[k]})" for k,v in by.most_common(18)))
cols=[c for c in rows[0] if c.startswith("stall_") and "Not Issued" not in c]
agg=collections.Counter()
for i in range(len(rows)):
    for c in cols: agg[c]+=float(rows[i][c] or 0)
print("stall totals:", " ".join(f"{k[6:]}:{v/tot:.1%}" for k,v in agg.most_common(10)))

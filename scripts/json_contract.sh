#!/usr/bin/env bash
# The JSON output of every command, written one file per command, to compare two versions of archviz:
#   git worktree add /tmp/before REV
#   scripts/json_contract.sh /tmp/before /tmp/json_before && scripts/json_contract.sh . /tmp/json_after
#   diff -r /tmp/json_before /tmp/json_after      # only the run folder's path (evaluate) and timing may differ
# SRC is the checkout whose archviz runs (with this checkout's .venv); models include held-out ones
# (torchvision, a user's module:callable with two inputs, an LSTM with int64 tokens).
set -u
SRC=$(cd "$1" && pwd); mkdir -p "$2"; OUT=$(cd "$2" && pwd)
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
export PYTHONPATH=$SRC
cat > $OUT/heldout_mod.py <<'PY'
import torch.nn as nn
def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
class TwoIn(nn.Module):
    def __init__(self):
        super().__init__(); self.a = nn.Linear(16, 8); self.b = nn.Linear(4, 8); self.h = nn.Linear(8, 10)
    def forward(self, x, y):
        return self.h(self.a(x) + self.b(y))
def lstm():
    class M(nn.Module):
        def __init__(self):
            super().__init__(); self.e = nn.Embedding(100, 16); self.l = nn.LSTM(16, 32, batch_first=True); self.h = nn.Linear(32, 10)
        def forward(self, t):
            o, _ = self.l(self.e(t)); return self.h(o[:, -1])
    return M()
PY
export PYTHONPATH=$SRC:$OUT
i=0
run() { i=$((i+1)); name=$(printf '%03d' $i); (cd /tmp && $PY -m archviz "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "rc=$?" >> "$OUT/$name.err"; echo "$*" > "$OUT/$name.cmd"); }
run list --format json
for m in lenet alexnet vgg11 nin googlenet resnet18 torchvision:mobilenet_v3_small torchvision:squeezenet1_1 heldout_mod:tiny; do
  run shapes $m --format json
  run cost $m --format json
done
run shapes torchvision:efficientnet_b0 --input 2x3x64x64 --format json --depth 2
run cost torchvision:densenet121 --input 8x3x64x64 --optimizer adam --format json
run cost vgg11 --input 64x1x224x224 --optimizer adam --budget 80GiB --format json
run cost resnet18 --amp --mode both --format json
run cost googlenet --by kind --format json
run cost lenet --sweep batch=1,8,32 --format json
run cost resnet18 --sweep input=32,64 --format json
run cost alexnet --dtype bf16 --optimizer sgd --format json
run cost heldout_mod:lstm --input 4x12:int64 --format json
run cost heldout_mod:TwoIn --input 2x16 --input 2x4 --format json
run shapes heldout_mod:TwoIn --input 2x16 --input 2x4 --format json
run compare lenet alexnet vgg11 --format json
run compare resnet18 torchvision:resnet34 --optimizer adam --batch 32 --format json
run explain lenet --format json
run explain googlenet --depth 2 --format json
run explain torchvision:resnet18 --format json
run diagram googlenet -o - --format dot
run diagram resnet18 --depth 2 -o - --format dot
run diff vgg11 resnet18 --format json
run diff vgg11 vgg11 --pb ratio=8 --format json
run cost lenet --budget 1KiB --format json
run shapes notamodel --format json
run cost lenet --input 1x1x2x2 --format json
rm -rf "$OUT/run"; (cd /tmp && $PY -m archviz train lenet --limit-train 600 --limit-test 200 --epochs 1 --threads 1 --device cpu --batch-size 64 --out "$OUT/run" > "$OUT/train.txt" 2>&1)
$PY -c "import json,sys; r=json.load(open(sys.argv[1])); [(d.pop('seconds'), d.pop('images_per_sec')) for d in r]; print(json.dumps(r))" "$OUT/run/metrics.json" > "$OUT/metrics.json"
run evaluate "$OUT/run/last.pt" --limit-test 200 --device cpu --format json
rm -rf "$OUT/run" "$OUT/train.txt"

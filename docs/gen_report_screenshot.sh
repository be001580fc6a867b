#!/usr/bin/env bash
# Regenerate docs/report-screenshot.png (shown in README.md): the report of the README's example,
# rendered by headless Chromium (apt-get install -y chromium), top of the page down to the scatter.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.venv/bin/planner report examples/clusters/h100-8nodes-ib.yaml examples/jobs/llama3-70b-pretrain.yaml \
    --top 3 --out "$out/report"
# --no-sandbox: Chromium's sandbox refuses to start as root (containers, CI).
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$out/profile" \
    --window-size=1280,2400 --screenshot="$out/page.png" "file://$out/report/report.html" 2>/dev/null
# 256 colours: a third of the size, no visible change on flat charts and text.
.venv/bin/python -c "
import sys
from PIL import Image
Image.open(sys.argv[1]).convert('RGB').quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
    .save(sys.argv[2], optimize=True)" "$out/page.png" docs/report-screenshot.png
echo "wrote docs/report-screenshot.png"

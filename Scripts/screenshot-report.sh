#!/usr/bin/env bash
# Renders a Backprop report page in headless Chromium, 1280 px wide, and writes PNG screenshots:
# the whole page (full.png, one tall image) and the same cut into 1280x1000 tiles (01.png, …),
# which are easier to look at. Needs python3 (standard library only) for the cutting.
#
#   Scripts/screenshot-report.sh runs/mnist/report.html [OUT_DIR]
#
# OUT_DIR defaults to a `screenshots` folder beside the page. Installs Debian's `chromium`
# (and the DejaVu fonts the page asks for) with apt-get when no Chromium is on the PATH.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 REPORT.html [OUT_DIR]" >&2
    exit 2
fi
page="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
out="${2:-$(dirname "$page")/screenshots}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
    echo "installing chromium (apt-get)…" >&2
    sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    browser="$(command -v chromium)"
fi

shoot() {  # shoot URL HEIGHT FILE
    # --no-sandbox: containers often run as root, where Chromium's sandbox cannot start.
    "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
        --window-size="1280,$2" --virtual-time-budget=3000 --screenshot="$3" "$1" >/dev/null 2>&1
    [ -s "$3" ] || { echo "error: chromium wrote no screenshot for $1" >&2; exit 1; }
    echo "$3"
}

# The whole page in one tall window, then cut with the Python standard library into 1000 px
# high tiles (01.png, 02.png, …) that can be read at full size; the blank bottom is trimmed.
# (Scrolling the window to each section's anchor instead leaves parts unpainted in headless mode.)
shoot "file://$page" "${FULL_HEIGHT:-16000}" "$out/full.png"
python3 - "$out/full.png" "$out" <<'PY'
import struct, sys, zlib

def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), "expected 8-bit RGB or RGBA"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, rows

def write_png(path, width, rows):
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + r for r in rows), 6)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))

full, out = sys.argv[1], sys.argv[2]
width, rows = read_png(full)
background = rows[-1]
end = len(rows)
while end > 1 and rows[end - 1] == background:
    end -= 1
rows = rows[:end + 20]
write_png(full, width, rows)
for n, top in enumerate(range(0, len(rows), 1000), start=1):
    path = "%s/%02d.png" % (out, n)
    write_png(path, width, rows[top:top + 1000])
    print(path)
PY

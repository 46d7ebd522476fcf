#!/usr/bin/env bash
# Renders assets/loupe.svg into the icon files each OS wants, beside it in assets/icons/:
#   hicolor/NxN/apps/loupe.png (16..512, Linux icon theme layout, also used by the AppImage),
#   loupe.ico (Windows: 16, 24, 32, 48, 64, 128, 256) and loupe.icns (macOS: 16..512).
# The outputs are committed, so building a package does not need these tools; run this again
# after changing the SVG.
#
# Needs: rsvg-convert (Debian: librsvg2-bin), ImageMagick's convert (imagemagick) and png2icns
# (icnsutils).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
svg="$here/loupe.svg"
out="$here/icons"
# /usr/local/bin/convert may be a stand-in on build machines; ImageMagick's is in /usr/bin.
convert_bin="${CONVERT:-/usr/bin/convert}"

for tool in rsvg-convert "$convert_bin" png2icns; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "generate-icons.sh: $tool is needed (apt install librsvg2-bin imagemagick icnsutils)" >&2
        exit 1
    fi
done

rm -rf "$out"
for size in 16 24 32 48 64 128 256 512; do
    dir="$out/hicolor/${size}x${size}/apps"
    mkdir -p "$dir"
    rsvg-convert -w "$size" -h "$size" "$svg" -o "$dir/loupe.png"
done
mkdir -p "$out/hicolor/scalable/apps"
cp "$svg" "$out/hicolor/scalable/apps/loupe.svg"

png() { echo "$out/hicolor/$1x$1/apps/loupe.png"; }
"$convert_bin" "$(png 16)" "$(png 24)" "$(png 32)" "$(png 48)" "$(png 64)" "$(png 128)" \
    "$(png 256)" "$out/loupe.ico"
# png2icns picks the icon type from each PNG's size (16, 32, 48, 128, 256, 512 are supported).
png2icns "$out/loupe.icns" "$(png 16)" "$(png 32)" "$(png 48)" "$(png 128)" "$(png 256)" \
    "$(png 512)" >/dev/null
echo "generate-icons.sh: wrote $out"

#!/usr/bin/env bash
# Builds Loupe's installers, each with ONNX Runtime inside. See packaging/README.md.
#
# Usage: packaging/build.sh linux     .deb and AppImage
#        packaging/build.sh windows   .msi, cross-built here with mingw-w64 and wixl
#        packaging/build.sh macos     .app in a .dmg, on a Mac only (cargo-packager)
#
# Output: packaging/out/ (installers), packaging/build/ (staging folders, wheel cache); both are
# ignored by git. Respects CARGO_TARGET_DIR. LOUPE_SKIP_CARGO=1 packages the binary already
# built instead of calling cargo (cargo would do nothing anyway when it is up to date).
#
# Debian packages used: dpkg-dev (dpkg-deb, dpkg-shlibdeps), squashfs-tools (mksquashfs),
# binutils (strip) and the Rust target x86_64-unknown-linux-musl (the AppImage runtime); for windows gcc-mingw-w64-x86-64, msitools (wixl) and the Rust target
# x86_64-pc-windows-gnu (rustup target add x86_64-pc-windows-gnu).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
build="$repo/packaging/build"
out="$repo/packaging/out"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
ort_version=1.24.4

say() { echo "build.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is needed: $2"
}

cargo_release() {
    # Arguments are passed on to cargo (e.g. --target).
    if [[ "${LOUPE_SKIP_CARGO:-}" != 1 ]]; then
        (cd "$repo" && cargo build --release --locked --bin loupe "$@")
    fi
}

# Files shared by the .deb and the AppImage, laid out under a prefix ("$1/usr").
stage_linux_share() {
    local usr="$1"
    install -Dm644 "$repo/assets/org.loupe.Loupe.desktop" \
        "$usr/share/applications/org.loupe.Loupe.desktop"
    install -Dm644 "$repo/assets/org.loupe.Loupe.metainfo.xml" \
        "$usr/share/metainfo/org.loupe.Loupe.metainfo.xml"
    install -Dm644 "$repo/assets/org.loupe.Loupe.mime.xml" \
        "$usr/share/mime/packages/org.loupe.Loupe.xml"
    (cd "$repo/assets/icons" && find hicolor -type f) | while read -r icon; do
        install -Dm644 "$repo/assets/icons/$icon" "$usr/share/icons/$icon"
    done
}

build_linux() {
    need dpkg-deb "apt install dpkg-dev"
    need dpkg-shlibdeps "apt install dpkg-dev"
    need mksquashfs "apt install squashfs-tools"
    need strip "apt install binutils"
    local arch
    arch="$(dpkg --print-architecture)"
    [[ "$arch" == amd64 ]] || die "only amd64 is packaged (the ONNX Runtime wheel pinned is x86_64)"

    cargo_release
    local bin="$target_dir/release/loupe"
    [[ -x "$bin" ]] || die "no release binary at $bin"
    local ort="$build/ort-linux"
    rm -rf "$ort"
    "$repo/packaging/fetch-ort.sh" linux "$ort" >/dev/null
    mkdir -p "$out"

    # --- .deb: /usr/bin/loupe, ONNX Runtime in /usr/lib/loupe/ (where loupe looks, beside
    # ../lib/loupe from its own folder), desktop integration under /usr/share. Icon, desktop
    # and MIME caches are refreshed by the dpkg triggers of hicolor-icon-theme,
    # desktop-file-utils and shared-mime-info, so no maintainer scripts are needed.
    local deb="$build/deb"
    rm -rf "$deb"
    install -Dm755 "$bin" "$deb/usr/bin/loupe"
    strip --strip-debug "$deb/usr/bin/loupe"
    install -Dm644 "$ort/libonnxruntime.so.$ort_version" \
        "$deb/usr/lib/loupe/libonnxruntime.so.$ort_version"
    install -Dm644 "$ort/libonnxruntime_providers_shared.so" \
        "$deb/usr/lib/loupe/libonnxruntime_providers_shared.so"
    stage_linux_share "$deb/usr"
    install -Dm644 "$repo/packaging/linux/copyright" "$deb/usr/share/doc/loupe/copyright"
    install -Dm644 "$ort/onnxruntime-LICENSE.txt" "$deb/usr/share/doc/loupe/onnxruntime-LICENSE.txt"
    install -Dm644 "$ort/onnxruntime-ThirdPartyNotices.txt" \
        "$deb/usr/share/doc/loupe/onnxruntime-ThirdPartyNotices.txt"

    # dpkg-shlibdeps reads the libraries the binaries link (libc, libgcc_s, libstdc++ for ONNX
    # Runtime) from this machine's package database; it wants a debian/control to exist.
    local shl="$build/shlibdeps"
    rm -rf "$shl"
    mkdir -p "$shl/debian"
    printf 'Source: loupe\n\nPackage: loupe\nArchitecture: any\n' >"$shl/debian/control"
    local depends
    depends="$(cd "$shl" && dpkg-shlibdeps -O --ignore-missing-info \
        -l"$deb/usr/lib/loupe" "$deb/usr/bin/loupe" "$deb/usr/lib/loupe/libonnxruntime.so.$ort_version" \
        2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
    [[ -n "$depends" ]] || die "dpkg-shlibdeps found no dependencies"
    local size_kb
    size_kb="$(du -sk "$deb/usr" | cut -f1)"
    mkdir -p "$deb/DEBIAN"
    # The window system libraries are opened at run time (winit, wgpu), so dpkg-shlibdeps
    # cannot see them: they are named by hand.
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
        -e "s/@SIZE@/$size_kb/" -e "s/@ORT@/$ort_version/" "$repo/packaging/linux/control.in" >"$deb/DEBIAN/control"
    local deb_file="$out/loupe_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$deb" "$deb_file" >/dev/null
    say "wrote $deb_file"

    # --- AppImage: an AppDir with the binary and ONNX Runtime side by side in usr/bin/.
    local appdir="$build/Loupe.AppDir"
    rm -rf "$appdir"
    install -Dm755 "$bin" "$appdir/usr/bin/loupe"
    strip --strip-debug "$appdir/usr/bin/loupe"
    install -Dm644 "$ort/libonnxruntime.so.$ort_version" "$appdir/usr/bin/libonnxruntime.so.$ort_version"
    install -Dm644 "$ort/libonnxruntime_providers_shared.so" \
        "$appdir/usr/bin/libonnxruntime_providers_shared.so"
    stage_linux_share "$appdir/usr"
    install -Dm644 "$ort/onnxruntime-LICENSE.txt" "$appdir/usr/share/doc/loupe/onnxruntime-LICENSE.txt"
    install -Dm644 "$ort/onnxruntime-ThirdPartyNotices.txt" \
        "$appdir/usr/share/doc/loupe/onnxruntime-ThirdPartyNotices.txt"
    install -Dm644 "$repo/packaging/linux/copyright" "$appdir/usr/share/doc/loupe/copyright"
    install -Dm755 "$repo/packaging/linux/AppRun" "$appdir/AppRun"
    cp "$repo/assets/org.loupe.Loupe.desktop" "$appdir/org.loupe.Loupe.desktop"
    cp "$repo/assets/icons/hicolor/256x256/apps/loupe.png" "$appdir/loupe.png"
    ln -s loupe.png "$appdir/.DirIcon"

    # A type-2 AppImage is a runtime (a static ELF) followed by a squashfs of the AppDir. gzip,
    # because Loupe's runtime reads only that (the official one reads it too).
    local squash="$build/loupe.squashfs"
    rm -f "$squash"
    mksquashfs "$appdir" "$squash" -root-owned -noappend -comp gzip -quiet >/dev/null
    local runtime="${APPIMAGE_RUNTIME:-}"
    if [[ -z "$runtime" ]]; then
        # Loupe's own extract-and-run runtime (packaging/appimage-runtime/src/main.rs says why).
        rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl ||
            die "the Rust target is missing: rustup target add x86_64-unknown-linux-musl"
        (cd "$repo/packaging/appimage-runtime" &&
            CARGO_TARGET_DIR="$target_dir/appimage-runtime" cargo build --release --locked \
                --target x86_64-unknown-linux-musl)
        runtime="$build/appimage-runtime"
        cp "$target_dir/appimage-runtime/x86_64-unknown-linux-musl/release/loupe-appimage-runtime" \
            "$runtime"
        # The type-2 magic, 'AI' 0x02, goes into the ELF header's padding at offset 8, which
        # the loader ignores.
        printf 'AI\002' | dd of="$runtime" bs=1 seek=8 conv=notrunc status=none
    fi
    [[ -f "$runtime" ]] || die "APPIMAGE_RUNTIME=$runtime is not a file"
    [[ "$(head -c 11 "$runtime" | tail -c 3 | od -An -c | tr -d ' ')" == 'AI002' ]] ||
        die "$runtime is not a type-2 AppImage runtime (no AI\\x02 magic at offset 8)"
    local appimage="$out/Loupe-$version-x86_64.AppImage"
    cat "$runtime" "$squash" >"$appimage.partial"
    chmod +x "$appimage.partial"
    mv "$appimage.partial" "$appimage"
    say "wrote $appimage"
}

build_windows() {
    need x86_64-w64-mingw32-gcc "apt install gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64"
    need wixl "apt install msitools"
    local triple=x86_64-pc-windows-gnu
    rustup target list --installed 2>/dev/null | grep -qx "$triple" ||
        die "the Rust target is missing: rustup target add $triple"

    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}" \
        cargo_release --target "$triple"
    local exe="$target_dir/$triple/release/loupe.exe"
    [[ -f "$exe" ]] || die "no release loupe.exe at $exe"

    local stage="$build/windows"
    rm -rf "$stage"
    mkdir -p "$stage" "$out"
    "$repo/packaging/fetch-ort.sh" windows "$stage" >/dev/null
    cp "$exe" "$stage/loupe.exe"
    x86_64-w64-mingw32-strip --strip-debug "$stage/loupe.exe"
    cp "$repo/assets/icons/loupe.ico" "$stage/loupe.ico"
    # The MIT/Apache licence texts Loupe is under travel as one file.
    cp "$repo/packaging/linux/copyright" "$stage/LICENSE.txt"
    # wixl needs numeric versions; Windows Installer compares the first three fields.
    local msi="$out/loupe-$version-x86_64.msi"
    # wixl resolves sources relative to the .wxs and refuses absolute paths: run it in the
    # staging folder.
    cp "$repo/packaging/windows/loupe.wxs" "$stage/loupe.wxs"
    (cd "$stage" && wixl --arch x64 -D Version="$version" -D StageDir=. -o "$msi" loupe.wxs)
    say "wrote $msi"
}

build_macos() {
    [[ "$(uname -s)" == Darwin && "$(uname -m)" == arm64 ]] ||
        die "the macOS .app and .dmg are built on an Apple silicon Mac (Apple's SDK, hdiutil); see packaging/README.md"
    need cargo-packager "cargo install cargo-packager --locked"
    local stage="$build/macos"
    rm -rf "$stage"
    mkdir -p "$stage" "$out"
    "$repo/packaging/fetch-ort.sh" macos "$stage" >/dev/null
    # cargo-packager reads [package.metadata.packager] in Cargo.toml: it builds the release
    # binary (before-packaging-command), makes Loupe.app with the icon, libonnxruntime.dylib in
    # Contents/Frameworks and packaging/macos/Info.plist merged in, then the .dmg.
    # Its out-dir is where it finds the binary as well as where it writes: target/release.
    (cd "$repo" && cargo packager --release)
    cp "$target_dir"/release/*.dmg "$out/"
    say "wrote $(ls "$out"/*.dmg)"
}

case "${1:-}" in
    linux) build_linux ;;
    windows) build_windows ;;
    macos) build_macos ;;
    *)
        echo "usage: packaging/build.sh linux|windows|macos" >&2
        exit 2
        ;;
esac

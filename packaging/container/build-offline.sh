#!/usr/bin/env bash
# Builds the runtime stage of packaging/container/Dockerfile with podman from a sockway binary
# built on this machine, without pulling any image:
#
#   packaging/container/build-offline.sh [--binary PATH] [--tag TAG]
#
# defaults: --binary ${CARGO_TARGET_DIR:-target}/release/sockway, --tag localhost/sockway:latest.
#
# The Dockerfile's runtime stage starts from gcr.io/distroless/cc-debian12:nonroot. Here that
# base is stood in for by a root filesystem made from this machine: the dynamic loader and the
# libraries `ldd` lists for the binary, /etc/passwd and /etc/group with distroless's users
# (root, nonroot 65532, nobody), /tmp, /home/nonroot and the CA bundle. The stage's other
# instructions are taken from the Dockerfile as they are, except the binary, which comes from
# --binary instead of the build stage. So the image differs from a `docker build` only in its
# base layer (this machine's glibc, which is Debian 12's on Debian 12, and no tzdata or
# os-release) and in how the binary was built.
#
# Needs podman (Debian: apt-get install --no-install-recommends podman), ldd and awk. Prints
# the image's tag on the last line.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dockerfile="$repo_root/packaging/container/Dockerfile"
binary="${CARGO_TARGET_DIR:-$repo_root/target}/release/sockway"
tag="localhost/sockway:latest"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "build-offline.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

[[ -x "$binary" ]] || { echo "build-offline.sh: no executable at $binary" >&2; exit 2; }
command -v podman >/dev/null || { echo "build-offline.sh: podman is required" >&2; exit 2; }

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
base="$context/base"
mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot"
chmod 1777 "$base/tmp"

# The loader and libraries, at the paths the binary looks for them.
libraries="$(ldd "$binary" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }')"
[[ -n "$libraries" ]] || { echo "build-offline.sh: ldd found no libraries for $binary" >&2; exit 1; }
for library in $libraries; do
    mkdir -p "$base$(dirname "$library")"
    cp -L "$library" "$base$library"
done

# distroless's users and groups.
cat > "$base/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$base/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
fi

cp "$binary" "$context/sockway"

# The runtime stage, continuation lines joined, with the base and the binary swapped. Any
# other COPY source is copied into the context at the same relative path.
awk '
    /\\$/ { sub(/\\$/, ""); pending = pending $0; next }
    { print pending $0; pending = "" }
' "$dockerfile" | awk -v repo="$repo_root" -v context="$context" '
    /^FROM gcr\.io\/distroless\/cc-debian12:nonroot AS runtime$/ {
        in_stage = 1; print "FROM scratch"; print "COPY base/ /"; next
    }
    !in_stage { next }
    /^FROM / { print "build-offline.sh: a stage after the runtime stage: " $0 > "/dev/stderr"; exit 3 }
    $1 == "COPY" && $2 == "--from=build" {
        if ($3 != "/usr/local/bin/sockway") {
            print "build-offline.sh: unexpected COPY from the build stage: " $0 > "/dev/stderr"; exit 3
        }
        print "COPY sockway " $4; next
    }
    $1 == "COPY" {
        if ($2 ~ /^--/) { print "build-offline.sh: unexpected COPY option: " $0 > "/dev/stderr"; exit 3 }
        if (system("mkdir -p \"" context "/$(dirname \"" $2 "\")\" && cp \"" repo "/" $2 "\" \"" context "/" $2 "\"") != 0) exit 3
        print; next
    }
    $1 == "RUN" || $1 == "ADD" {
        print "build-offline.sh: the runtime stage must not use " $1 ": " $0 > "/dev/stderr"; exit 3
    }
    { print }
    END { if (!in_stage) { print "build-offline.sh: no runtime stage in the Dockerfile" > "/dev/stderr"; exit 3 } }
' > "$context/Containerfile"

# Docker's format keeps HEALTHCHECK (the OCI format has no field for it).
podman build --quiet --format docker --pull=never --network=none \
    -f "$context/Containerfile" -t "$tag" "$context" >/dev/null
echo "$tag"

#!/usr/bin/env bash
# Lints the Dockerfile (hadolint, pinned) and builds the region core's
# image with whichever engine this machine has: docker (with a running
# daemon), podman or buildah. Without one it says so and only lints.
#
#   scripts/build-image.sh [image:tag]        # default booking/region-core:dev
#   scripts/build-image.sh --lint-only
#
# Push it yourself afterwards (`docker push image:tag`); docs/deploy.md
# has the whole path from here to a running shard.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

image="booking/region-core:dev"
lint_only=0
case "${1:-}" in
--lint-only) lint_only=1 ;;
-h | --help)
    sed -n '2,10p' "$0"
    exit 0
    ;;
"") ;;
*) image="$1" ;;
esac

env_lines="$(bash scripts/deploy-toolchain.sh python)" ||
    die "the deploy tools could not be installed (see above)"
eval "$env_lines"
log "hadolint Dockerfile"
"$HADOLINT_BIN" --failure-threshold warning Dockerfile
log "Dockerfile: hadolint clean"
[ "$lint_only" -eq 0 ] || exit 0

# The first engine that can actually build: a docker client without a
# daemon (CI containers often have one) does not count.
engine=""
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
elif command -v podman >/dev/null 2>&1; then
    engine=podman
elif command -v buildah >/dev/null 2>&1; then
    engine=buildah
fi
if [ -z "$engine" ]; then
    log "no container engine here (no docker daemon, no podman, no buildah): linted only, image NOT built"
    exit 0
fi

log "$engine build -t $image ."
case "$engine" in
docker) DOCKER_BUILDKIT=1 docker build -t "$image" . ;;
podman) podman build -t "$image" . ;;
buildah) buildah bud -t "$image" . ;;
esac
# The image's uncompressed size (what a node stores), in MB.
case "$engine" in
docker | podman) bytes="$("$engine" image inspect --format '{{.Size}}' "$image")" ;;
buildah)
    buildah images "$image" >&2
    exit 0
    ;;
esac
log "built $image: $((bytes / 1000000)) MB"

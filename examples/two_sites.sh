#!/usr/bin/env bash
# Two sites, one history: push to a bare copy, clone, commit on both sides,
# pull (a merge), tag and cite a release at one site, verify it at the other.
#
#     bash examples/two_sites.sh [DIRECTORY]
#
# Uses the `improv` command line only (it must be on PATH). The images come
# from `improv demo` (generated IFCB-like ROIs, exported as PNG files with a
# metadata table), plus the real IFCB bin the repository keeps under
# tests/data/irfcb (committed at site B with --format ifcb; skipped when the
# script runs from a copy outside the repository).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
real_bin="$here/../tests/data/irfcb/D20220522T003051_IFCB134"
if [[ $# -gt 0 ]]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
work="$(cd "$work" && pwd)"
cd "$work"

# Images to commit: a small demo repository, exported as folders of PNG files
# named like D20240501T000000_IFCB107_00001.png. The metadata.parquet that
# export writes beside them holds columns improv reserves (instrument, blob_id,
# pack, ...), which `improv commit` refuses, so it is removed: ids, times and
# samples then come from the IFCB-style file names.
improv demo demo --images-per-bin 5 --quiet > /dev/null
improv export batches/all --repo demo --quiet > /dev/null
rm batches/all/metadata.parquet
mkdir batches/ifcb107 batches/ifcb110-day1 batches/ifcb110-day2
mv batches/all/D2024050?T*_IFCB107_* batches/ifcb107/
mv batches/all/D20240501T*_IFCB110_* batches/ifcb110-day1/
mv batches/all/D20240502T*_IFCB110_* batches/ifcb110-day2/

# Site A: a new repository and a first commit.
improv init site-a > /dev/null
echo "== site A: init, commit, push to an empty directory (the hub)"
improv commit batches/ifcb107 --repo site-a -i IFCB107 -m "IFCB107, 1-2 May" --quiet

# A bare copy: pushing to an empty directory creates the repository there.
improv remote add origin "$work/hub" --repo site-a > /dev/null
improv push origin --repo site-a --quiet

# Site B: a verified clone of the hub (its origin is the hub).
echo "== site B: clone the hub"
improv clone "$work/hub" site-b --quiet

# Both sites append: A pushes first, so B must pull (a merge commit) before pushing.
echo "== both sites commit; A pushes first"
improv commit batches/ifcb110-day1 --repo site-a -i IFCB110 -m "IFCB110, 1 May (site A)" --quiet
improv push origin --repo site-a --quiet
improv commit batches/ifcb110-day2 --repo site-b -i IFCB110 -m "IFCB110, 2 May (site B)" --quiet
if [[ -f "$real_bin.roi" ]]; then
    improv commit --format ifcb "$real_bin.hdr" --repo site-b -m "Real IFCB134 bin (site B)" --quiet
fi
if improv push origin --repo site-b --quiet > /dev/null 2>&1; then
    echo "unexpected: site B pushed without pulling" >&2
    exit 1
fi
echo "site B: push refused (not a fast-forward), pulling"
improv pull origin --repo site-b --quiet
echo "site B: merged, $(improv query --repo site-b --count) images"

# A release at site B, cited, and published with its tag.
echo "== site B: tag, cite and push release v1"
improv tag v1 --repo site-b --title "Two-site IFCB survey, May 2024" \
    --author "Lovelace, Ada" --license CC-BY-4.0 > /dev/null
improv cite --repo site-b --tag v1 --format bibtex -o "$work/v1.bib" 2>&1
echo "site B: cited v1 in v1.bib ($(grep -c '' "$work/v1.bib") lines)"
improv push origin --repo site-b --tags --quiet

# Back at site A: pull (a fast-forward), then check the citation there.
echo "== site A: pull, verify the citation"
improv pull origin --repo site-a --quiet
echo "site A: pulled, $(improv query --repo site-a --count) images"
improv cite verify "$work/v1.bib" --repo site-a
echo "verified at site A"

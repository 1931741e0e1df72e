# shellcheck shell=bash
# A private apt configuration for fetching Debian packages without installing anything (sourced by
# scripts/qemu/sid-root.sh and scripts/mesa/build-mesa.sh). apt runs with its own sources list,
# lists, status file and archive dir under a folder of the caller's cache; the machine's apt state
# is never touched.
#
#   uri=$(fdnc_debian_archive_uri)                  # the machine's archive URI, read at run time
#   fdnc_private_apt_config DIR SUITE URI || die    # sets FDNC_APT_OPTS (an array of -o options)
#   apt-get "${FDNC_APT_OPTS[@]}" update
#
# No host name is written into the repository: the URI comes from the machine's own
# /etc/apt/sources.list.d/debian.sources (or /etc/apt/sources.list).

# The Debian archive URI this machine's apt uses for its main suite (not -security, not -updates):
# the first deb822 stanza that lists a suite without a dash, else the first `deb` line of
# sources.list. Prints nothing when there is none.
fdnc_debian_archive_uri() {
    local f=/etc/apt/sources.list.d/debian.sources uri=""
    if [[ -f "$f" ]]; then
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )[a-z]+( |$)/ && u !~ /security/) { print u; exit } u = ""; s = ""; next }
            /^URIs:/ { u = $2 }
            /^Suites:/ { s = ""; for (i = 2; i <= NF; i++) if ($i !~ /-/) s = s " " $i }
            END { if (u != "" && u !~ /security/ && s != "") print u }' "$f" | head -1)
    fi
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
              /etc/apt/sources.list | head -1)
    fi
    echo "$uri"
}

# fdnc_private_apt_config DIR SUITE URI
# Creates DIR/{etc,state,cache} with an empty status file and a sources list holding one line
# `deb [signed-by=<debian-archive-keyring>] URI SUITE main`, and sets FDNC_APT_OPTS to the apt
# options that use them (native architecture only, no recommends/suggests, no locking, no sandbox
# user). With an empty status file apt resolves a package's whole dependency closure.
# Returns 1 (message on stderr) when the Debian archive keyring is missing.
fdnc_private_apt_config() {
    local dir="$1" suite="$2" uri="$3"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$dir"/{etc/sources.list.d,etc/preferences.d,state/lists/partial,cache/archives/partial}
    : >"$dir/state/status"
    if [[ ! -f "$keyring" ]]; then
        echo "fdnc: $keyring missing (package debian-archive-keyring)" >&2
        return 1
    fi
    echo "deb [signed-by=$keyring] $uri $suite main" >"$dir/etc/sources.list"
    local arch
    arch=$(dpkg --print-architecture)
    # shellcheck disable=SC2034  # for the caller
    FDNC_APT_OPTS=(-o "Dir::Etc::SourceList=$dir/etc/sources.list"
                   -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
                   -o "Dir::Etc::Preferences=$dir/etc/preferences"
                   -o "Dir::Etc::PreferencesParts=$dir/etc/preferences.d"
                   -o "Dir::State=$dir/state" -o "Dir::State::Lists=$dir/state/lists"
                   -o "Dir::State::status=$dir/state/status"
                   -o "Dir::Cache=$dir/cache" -o "Dir::Cache::archives=$dir/cache/archives"
                   -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch"
                   -o "APT::Install-Recommends=false" -o "APT::Install-Suggests=false"
                   -o "Debug::NoLocking=true" -o "APT::Sandbox::User=root")
}

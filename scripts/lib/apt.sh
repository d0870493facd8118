# Sourced by scripts/setup-host.sh and scripts/build-guest.sh (POSIX sh): apt-get that waits its
# turn. A fresh cloud machine often runs unattended upgrades while it boots; apt-get then fails at
# once with "Could not get lock …". apt_get retries while another apt or dpkg holds one of apt's
# locks (the lists, the archives, dpkg's frontend lock), says once what it is waiting for, and
# gives up after APT_LOCK_WAIT seconds (default 1200). Its own output goes to the file named by
# $APT_LOG, shown by the caller only on failure.
#
#   APT_LOG=/tmp/log apt_get install -y foo      # status 0, or apt-get's status once the lock is ours

apt_get() {
    _apt_waited=0
    _apt_limit=${APT_LOCK_WAIT:-1200}
    while :; do
        _apt_status=0
        apt-get "$@" </dev/null >"$APT_LOG" 2>&1 || _apt_status=$?
        if [ "$_apt_status" -eq 0 ]; then
            [ "$_apt_waited" -eq 0 ] || echo "apt: the lock is free; apt-get $1 went ahead after ${_apt_waited}s"
            return 0
        fi
        grep -qE 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock' "$APT_LOG" ||
            return $_apt_status
        if [ "$_apt_waited" -ge "$_apt_limit" ]; then
            echo "apt: gave up after ${_apt_waited}s waiting for apt's lock (APT_LOCK_WAIT=$_apt_limit)" >>"$APT_LOG"
            return $_apt_status
        fi
        if [ "$_apt_waited" -eq 0 ]; then
            _apt_holder=$(sed -n 's/.*It is held by \(process [0-9]* ([^)]*)\).*/\1/p' "$APT_LOG" | head -n 1)
            echo "apt: waiting for another apt/dpkg to finish (${_apt_holder:-lock held}) before apt-get $1; up to ${_apt_limit}s"
        fi
        sleep 2
        _apt_waited=$((_apt_waited + 2))
    done
}

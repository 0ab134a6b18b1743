# Shell functions of the guest's console bash (shell.sh loads this file as its rc file), so the
# host sends `ebpflab_poll OUT SIZE CHUNK NONCE`, not a generated shell program: every argument
# is quoted once, by the host (lab/guest/shell.py), and used here only as "$1", "$2"...
# They run in the console's own bash and fork as little as they can: an emulated guest has
# one vCPU, shared with the BCC compile a readiness check waits for.

# ebpflab_spawn OUT COMMAND: start COMMAND in the background, its output to OUT, its pid to
# OUT.pid, its exit status to OUT.rc when it ends; print the pid.
# The interactive shell puts a background job in its own process group, so setsid forks and
# `$!` would name the short-lived parent: the script writes its own pid (the new session's and
# process group's id, which ebpflab_stop signals). The subshell keeps the job out of the
# shell's job table, whose "Done" notices would otherwise land in the next command's output. A
# shell without job control starts background jobs with SIGINT ignored, and Python then never
# raises KeyboardInterrupt, so a tracer could not clean up: env restores the default.
ebpflab_spawn() {
    local out=$1 i
    ( setsid env --default-signal=INT bash -c 'echo $$ > "$1.pid"; eval "$2"; echo $? > "$1.rc"' \
        ebpflab "$out" "$2" > "$out" 2>&1 < /dev/null & )
    for i in $(seq 300); do [ -s "$out.pid" ] && break; sleep 0.1; done
    cat "$out.pid"
}

# ebpflab_poll OUT SIZE CHUNK NONCE: what the spawned process wrote to OUT after its first SIZE
# bytes, at most CHUNK of them, then a line NONCE:END:STATUS:BACKLOG (lab/guest/console.py).
# The status is read first: once it exists the process has written all its output, so the size
# read after it is final. It is only given with the last bytes.
ebpflab_poll() {
    local out=$1 size=$2 chunk=$3 nonce=$4 r s e
    r=$(cat "$out.rc" 2>/dev/null); s=$(stat -c %s "$out")
    e=$((s > size + chunk ? size + chunk : s))
    [ "$e" -lt "$s" ] && r=
    tail -c +$((size + 1)) "$out" | head -c $((e - size))
    printf '\n%s:%s:%s:%s\n' "$nonce" "$e" "$r" $((s - e))
}

# ebpflab_stop PID: interrupt process group PID (SIGINT, so a tracer cleans up), SIGKILL after 3 s.
ebpflab_stop() {
    local i
    kill -INT -- "-$1" 2>/dev/null
    for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$1" 2>/dev/null || break; sleep 0.3; done
    kill -KILL -- "-$1" 2>/dev/null
    true
}

# ebpflab_ready STATUS TIMEOUT INTERVAL WORD FILE [COMMAND]: print "ready" once FILE holds WORD
# (when WORD is given; bash reads the file itself, no grep forked) or COMMAND succeeds, "ended"
# if STATUS (the program's exit status file) appears first, "late" after TIMEOUT seconds. It
# waits with `read -t` on a FIFO nobody writes (`sleep` only if that fails): a grep cost
# 80-100 ms of an emulated vCPU and a sleep 40-70 ms, some 30% of it at two checks a second.
ebpflab_ready() {
    local status=$1 timeout=$2 interval=$3 word=$4 file=$5 command=${6:-} end=$((SECONDS + $2)) line hit
    mkfifo "$status.wait" 2>/dev/null; exec 8<>"$status.wait"
    while :; do
        if [ -n "$word" ]; then
            hit=
            while IFS= read -r line; do [[ $line == *"$word"* ]] && { hit=1; break; }; done < "$file" 2>/dev/null
            [ -n "$hit" ] && { echo ready; break; }
        elif { eval "$command"; } >/dev/null 2>&1; then
            echo ready; break
        fi
        [ -e "$status" ] && { echo ended; break; }
        [ $SECONDS -ge $end ] && { echo late; break; }
        read -t "$interval" -u 8 2>/dev/null; [ $? -gt 128 ] || sleep "$interval"
    done
    exec 8<&-; rm -f "$status.wait"
}

# ebpflab_kill_leftovers: kill what a timed-out console command left behind, setting
# ebpflab_n (processes killed) and ebpflab_k (killed in the last round: not 0 means they keep
# coming back). Ctrl-C reaches the foreground job only, and background jobs (a fork bomb,
# `sleep 1000 &`) would slow or break every later test on this guest. Processes of the
# console's session started after the shell are killed (zombies only wait to be reaped), in
# rounds until none is left (at most ten), with builtins only: under a fork bomb a fork may
# never succeed. The session's leader (su) started before the shell; spawned tracers have
# sessions of their own.
ebpflab_kill_leftovers() {
    local l a g t r f p
    read -r l 2>/dev/null < /proc/$$/stat; a=(${l##*) }); g=${a[3]}; t=${a[19]}; ebpflab_n=0
    for r in 1 2 3 4 5 6 7 8 9 10; do
        ebpflab_k=0
        for f in /proc/[0-9]*/stat; do
            read -r l 2>/dev/null < "$f" || continue
            a=(${l##*) }); p=${f#/proc/}; p=${p%/stat}
            [ "${a[3]}" = "$g" ] && [ "${a[19]}" -gt "$t" ] && [ "$p" != $$ ] && [ "${a[0]}" != Z ] \
                && kill -9 "$p" 2>/dev/null && ebpflab_k=$((ebpflab_k + 1))
        done
        ebpflab_n=$((ebpflab_n + ebpflab_k))
        [ $ebpflab_k = 0 ] && break
    done
}

# ebpflab_kmsg_open: open the kernel log (/dev/kmsg) for ebpflab_kmsg_read, past what it holds now
# (the boot). Each open file of /dev/kmsg has its own read position, so every read brings only
# what was logged since the one before. dd reads it non-blocking, one record per read(2) (16 KiB
# holds any), and stops at the end; mapfile finds the last record's number without a loop.
ebpflab_kmsg_open() {
    local out=${TMPDIR:-/tmp}/.ebpf-lab-kmsg i records
    exec {ebpflab_kmsg}</dev/kmsg || return
    dd <&"$ebpflab_kmsg" iflag=nonblock bs=16k status=none > "$out" 2> /dev/null
    mapfile -t records < "$out"
    ebpflab_kmsg_seq=
    for ((i = ${#records[@]} - 1; i >= 0; i--)); do
        [[ ${records[i]} == [0-9]* ]] && { ebpflab_kmsg_seq=${records[i]#*,}; ebpflab_kmsg_seq=${ebpflab_kmsg_seq%%,*}; break; }
    done
    true
}

# ebpflab_kmsg_read: print what the kernel logged since the last read, as dmesg does
# ("[   12.345678] message"). When the kernel's ring buffer wrapped past the read position, the
# first read(2) fails (EPIPE) and moves the position to the oldest record left: dd reads again.
ebpflab_kmsg_read() {
    local out=${TMPDIR:-/tmp}/.ebpf-lab-kmsg round error
    for round in 1 2; do
        dd <&"$ebpflab_kmsg" iflag=nonblock bs=16k status=none > "$out" 2> "$out.err"
        ebpflab_kmsg_print < "$out"
        error=; read -r error < "$out.err"
        [[ $error == *"Broken pipe"* ]] || break
    done
}

# ebpflab_kmsg_print: /dev/kmsg records ("priority,number,microseconds,flags;message", non-printable
# bytes as \xNN; continuation lines start with a space and are left out) as dmesg prints them,
# and a line for records the kernel overwrote before they were read: numbers rise by one.
ebpflab_kmsg_print() {
    local line head seq usec
    while IFS= read -r line; do
        [[ $line == [0-9]* ]] || continue
        head=${line%%;*}; seq=${head#*,}; seq=${seq%%,*}; usec=${head#*,*,}; usec=${usec%%,*}
        [ -n "$ebpflab_kmsg_seq" ] && [ "$seq" -gt $((ebpflab_kmsg_seq + 1)) ] &&
            echo "ebpf-lab: $((seq - ebpflab_kmsg_seq - 1)) kernel log records were overwritten before they were read"
        ebpflab_kmsg_seq=$seq
        printf '[%5d.%06d] %b\n' $((usec / 1000000)) $((usec % 1000000)) "${line#*;}"
    done
}

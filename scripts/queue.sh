#!/usr/bin/env bash
# queue.sh SNAPSHOT QFILE: run QFILE's lines (NAME<TAB>CMD) one at a time from the repository root with
# the code of SNAPSHOT (a `git worktree add --detach DIR COMMIT`), so that editing the working tree
# cannot change a running study. Logs and NAME.done (seconds) / NAME.failed go to runs/queue/; a line
# with a .done or .failed marker is skipped; lines appended later are picked up (replace the file with
# mv, never edit it in place). A line may set PYTHONPATH itself to use another snapshot.
#   git worktree add --detach /tmp/snap HEAD
#   (setsid nohup bash scripts/queue.sh /tmp/snap /abs/path/to/q.txt > /dev/null 2>&1 &)
SNAP=$1; Q=$2; ROOT=$(cd "$(dirname "$0")/.." && pwd); LOG=$ROOT/runs/queue; mkdir -p $LOG
cd "$ROOT"
while true; do
  line=""
  while IFS=$'\t' read -r name cmd; do
    [ -z "$name" ] && continue
    [ -e "$LOG/$name.done" ] || [ -e "$LOG/$name.failed" ] && continue
    line="$name"; c="$cmd"; break
  done < "$Q"
  [ -z "$line" ] && { echo "$(date +%T) queue empty" >> $LOG/queue.log; exit 0; }
  echo "$(date +%T) start $line: $c" >> $LOG/queue.log
  t0=$(date +%s)
  PYTHONPATH=$SNAP/src bash -c "$c" > $LOG/$line.log 2>&1
  rc=$?; t=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then echo $t > $LOG/$line.done; else echo "rc=$rc $t" > $LOG/$line.failed; fi
  echo "$(date +%T) end $line rc=$rc ${t}s" >> $LOG/queue.log
done

#!/bin/sh
# Ask the question in question.txt, keep the turn as JSON, and act on how it ended.
lash run --session notes --json - < question.txt > turn.json
status=$?
case $status in
  0) echo "answered" ;;
  3) echo "stopped before an answer (tool round limit, or a plugin)" ;;
  130) echo "interrupted: the turn is saved as cancelled" ;;
  *) echo "lash run failed with exit status $status" >&2; exit "$status" ;;
esac

# A follow-up in the same session; stdout is the answer alone, so it can go straight to a file.
echo "Summarise that in one line." | lash run --session notes > answer.txt

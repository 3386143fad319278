package chaos

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestCheckerCatchesAnomalies feeds the checker histories with the two
// anomalies a broken read path or a lost write produces, so a checker that
// accepts anything cannot pass the suite.
func TestCheckerCatchesAnomalies(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	cases := []struct {
		name    string
		history []op
		want    porcupine.CheckResult
	}{
		{"linearizable", []op{
			{client: 0, kind: opWrite, value: 1, call: ms(1), ret: ms(3), outcome: ok},
			{client: 1, kind: opRead, value: 0, call: ms(2), ret: ms(4), outcome: ok}, // concurrent with the write: may see 0
			{client: 1, kind: opRead, value: 1, call: ms(5), ret: ms(6), outcome: ok},
			{client: 2, kind: opWrite, value: 2, call: ms(5), ret: ms(9), outcome: unknown}, // seen later: happened
			{client: 0, kind: opRead, value: 2, call: ms(10), ret: ms(11), outcome: ok},
			{client: 2, kind: opWrite, value: 3, call: ms(12), ret: ms(13), outcome: unknown}, // never seen: may not have happened
			{client: 1, kind: opRead, value: 2, call: ms(14), ret: ms(15), outcome: ok},
		}, porcupine.Ok},
		{"stale read", []op{
			{client: 0, kind: opWrite, value: 1, call: ms(1), ret: ms(2), outcome: ok},
			{client: 1, kind: opRead, value: 0, call: ms(3), ret: ms(4), outcome: ok}, // after an acknowledged write, sees the old value
		}, porcupine.Illegal},
		{"resurrected value", []op{
			{client: 0, kind: opWrite, value: 1, call: ms(1), ret: ms(2), outcome: ok},
			{client: 0, kind: opWrite, value: 2, call: ms(3), ret: ms(4), outcome: ok},
			{client: 1, kind: opRead, value: 2, call: ms(5), ret: ms(6), outcome: ok},
			{client: 1, kind: opRead, value: 1, call: ms(7), ret: ms(8), outcome: ok}, // an overwritten value comes back
		}, porcupine.Illegal},
		{"lost unknown write seen then unseen", []op{
			{client: 0, kind: opWrite, value: 5, call: ms(1), ret: ms(2), outcome: unknown},
			{client: 1, kind: opRead, value: 5, call: ms(3), ret: ms(4), outcome: ok},
			{client: 1, kind: opRead, value: 0, call: ms(5), ret: ms(6), outcome: ok}, // the write was seen, then lost
		}, porcupine.Illegal},
		{"failed ops ignored", []op{
			{client: 0, kind: opWrite, value: 1, call: ms(1), ret: ms(2), outcome: failed},
			{client: 1, kind: opRead, value: 99, call: ms(3), ret: ms(4), outcome: failed},
			{client: 1, kind: opRead, value: 0, call: ms(5), ret: ms(6), outcome: ok},
		}, porcupine.Ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := checkKey("k.chaos.test", 0, tc.history, 10*time.Second)
			if v.result != tc.want {
				t.Fatalf("checker says %s, want %s", v.result, tc.want)
			}
		})
	}
}

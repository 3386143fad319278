package chaos

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// outcome is what a client knows about an operation.
type outcome int

const (
	ok      outcome = iota // acknowledged
	failed                 // definitely not applied (refused, or never sent)
	unknown                // timed out or failed after it may have been proposed
)

func (o outcome) String() string { return [...]string{"ok", "failed", "unknown"}[o] }

type opKind int

const (
	opWrite opKind = iota // register write: tenant update of cache_default_ttl_seconds
	opRead                // leader-confirmed read of the same field
	opAdd                 // tenant add of a fresh domain
)

// op is one operation in a history. Times are nanoseconds since the run
// started.
type op struct {
	client    int
	kind      opKind
	key       string // tenant domain (register) or the added domain
	value     int64  // written or read
	call, ret int64
	outcome   outcome
	node      int
	err       string
}

// registerInput is a porcupine input for the register model.
type registerInput struct {
	write bool
	value int64
}

// registerModel is a single register (one key; histories are checked key
// by key). A read's output is the value it saw.
var registerModel = porcupine.Model{
	Init: func() any { return int64(math.MinInt64) }, // replaced by the first write, see checkKey
	Step: func(state, input, output any) (bool, any) {
		in := input.(registerInput)
		if in.write {
			return true, in.value
		}
		return output.(int64) == state.(int64), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(registerInput)
		if in.write {
			return fmt.Sprintf("write(%d)", in.value)
		}
		return fmt.Sprintf("read() → %d", output.(int64))
	},
}

// verdict of one key's history.
type verdict struct {
	key     string
	result  porcupine.CheckResult
	ops     int
	pending int // unknown writes some read observed, left open
	dropped int // unknown writes no read observed
}

// checkKey checks one key's register history. init is the value the key
// held before the history (written as a completed write at time 0).
//
// Reads that failed or timed out are left out: a read changes nothing.
// Writes that failed definitely are left out. A write whose outcome is
// unknown may or may not have happened: it stays open (Return = +inf) if a
// read saw its value, and is left out if none did, which is exact for a
// register with unique values: an unobserved optional write can always be
// linearized last, and left out otherwise.
func checkKey(key string, init int64, history []op, timeout time.Duration) verdict {
	observed := map[int64]bool{}
	for _, o := range history {
		if o.kind == opRead && o.outcome == ok {
			observed[o.value] = true
		}
	}
	v := verdict{key: key}
	ops := []porcupine.Operation{{ClientId: 0, Input: registerInput{write: true, value: init}, Call: 0, Output: int64(0), Return: 0}}
	for _, o := range history {
		switch {
		case o.outcome == failed:
		case o.kind == opRead && o.outcome == ok:
			ops = append(ops, porcupine.Operation{ClientId: o.client + 1, Input: registerInput{}, Call: o.call, Output: o.value, Return: o.ret})
		case o.kind == opWrite && o.outcome == ok:
			ops = append(ops, porcupine.Operation{ClientId: o.client + 1, Input: registerInput{write: true, value: o.value}, Call: o.call, Output: int64(0), Return: o.ret})
		case o.kind == opWrite && o.outcome == unknown:
			if !observed[o.value] {
				v.dropped++
				continue
			}
			v.pending++
			ops = append(ops, porcupine.Operation{ClientId: o.client + 1, Input: registerInput{write: true, value: o.value}, Call: o.call, Output: int64(0), Return: math.MaxInt64})
		}
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	v.ops = len(ops)
	v.result = porcupine.CheckOperationsTimeout(registerModel, ops, timeout)
	return v
}

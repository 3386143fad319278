package proxy

import (
	"crypto/rand"
	"net/http"
	"sync/atomic"
)

// headerRequestID is the request ID header, in canonical form.
const headerRequestID = "X-Request-Id"

// maxRequestIDLen bounds an incoming X-Request-Id the proxy keeps.
const maxRequestIDLen = 128

// validRequestID reports whether a client's X-Request-Id is kept: 1 to
// maxRequestIDLen bytes of letters, digits and - _ . : + / = (UUIDs, hex
// and base64 IDs, most tracing systems' formats). Anything else (spaces,
// quotes, commas, control bytes, non-ASCII) is replaced by a generated
// ID: the value is echoed to the client, passed to the origin and logged,
// so it must not be able to carry anything but an identifier.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !requestIDChar[s[i]] {
			return false
		}
	}
	return true
}

var requestIDChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "-_.:+/=" {
		t[c] = true
	}
	return t
}()

// incomingRequestID returns the client's X-Request-Id values when there is
// exactly one and it is well-formed, else nil.
func incomingRequestID(h http.Header) []string {
	if v := h[headerRequestID]; len(v) == 1 && validRequestID(v[0]) {
		return v
	}
	return nil
}

// Generated request IDs are 20 characters of lowercase base32hex
// ([0-9a-v]): 10 for a random prefix drawn once per Handler (50 bits), 10
// for a per-Handler counter (50 bits, which does not wrap in practice).
// IDs are unique within a process and, with overwhelming probability,
// across processes and restarts; they carry no time and no secret.
//
// They are cut from blocks of idsPerBlock IDs built at once, so a request
// pays an atomic add and a substring: no system call, no lock, and one
// allocation per idsPerBlock requests instead of one per request.
const (
	idPrefixLen = 10
	idLen       = 20
	idsPerBlock = 64
)

const base32hex = "0123456789abcdefghijklmnopqrstuv"

type idBlock struct {
	s    string        // idsPerBlock IDs back to back
	next atomic.Uint32 // index of the next ID to hand out
}

type requestIDs struct {
	prefix  [idPrefixLen]byte
	counter atomic.Uint64 // first counter value of the next block
	cur     atomic.Pointer[idBlock]
}

func newRequestIDs() (*requestIDs, error) {
	g := new(requestIDs)
	var seed [idPrefixLen]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	for i, b := range seed {
		g.prefix[i] = base32hex[b&31]
	}
	return g, nil
}

// next returns a new request ID.
func (g *requestIDs) next() string {
	for {
		b := g.cur.Load()
		if b != nil {
			if i := b.next.Add(1) - 1; i < idsPerBlock {
				return b.s[i*idLen : (i+1)*idLen]
			}
		}
		nb := g.newBlock()
		nb.next.Store(1)
		if g.cur.CompareAndSwap(b, nb) {
			return nb.s[:idLen]
		}
		// Another request installed a block first: use that one (this
		// block's counter range is skipped).
	}
}

func (g *requestIDs) newBlock() *idBlock {
	first := g.counter.Add(idsPerBlock) - idsPerBlock
	var buf [idsPerBlock * idLen]byte
	for i := range idsPerBlock {
		id := buf[i*idLen : (i+1)*idLen]
		copy(id, g.prefix[:])
		n := first + uint64(i)
		for j := idLen - 1; j >= idPrefixLen; j-- {
			id[j] = base32hex[n&31]
			n >>= 5
		}
	}
	return &idBlock{s: string(buf[:])}
}

package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/klauspost/compress/gzip"

	"github.com/edgeproxy/edge/proxy/compress"
)

// object is one stored response (or a Vary marker). Objects are immutable
// once built: a refresh builds a new one, so readers need no lock.
type object struct {
	// What the object is, for purge matching.
	tenant, host, pathQuery string
	tags                    []string
	stamp                   uint64 // purge index current when the fetch began

	// vary holds the canonical request header names the response varies on
	// (Accept-Encoding excluded: the cache negotiates gzip itself).
	// A marker object holds only vary; varyVals holds the values of the
	// request that produced a real object, to keep collapsed requests with
	// other values apart.
	vary     []string
	varyVals string
	marker   bool

	// hitForMiss makes the object a hit-for-miss mark: the last response
	// for this key could not be stored (markReason says why), so the next
	// requests are passed, each to the origin on its own, instead of
	// queueing behind one collapsed fetch. It lives in L1 only, for hitForMissTTL, and a
	// storable response replaces it.
	hitForMiss bool
	markReason string

	status  int
	header  http.Header // stored end-to-end headers: no framing, encoding, Age or cookies
	body    []byte
	gzipped bool // body is gzip; clients without gzip get it decompressed
	// br and zst are the br and zstd forms (docs/cache.md, "Encodings"):
	// the origin's own body as received, or derived in the background
	// from the identity body. L1 only: nil in an object from L2/L3 until
	// it is derived again.
	br, zst  []byte
	identLen int64  // length of the identity body
	ident    []byte // identity body kept next to a small gzip body (see keepIdentity); not encoded

	responseTime time.Time
	initialAge   time.Duration
	lifetime     time.Duration
	swr, sie     time.Duration
	mustReval    bool
	noCache      bool

	// Derived by finish, not encoded.
	hdrIdent, hdrGzip http.Header // full response headers per content-coding
	hdrBr, hdrZstd    http.Header
	have              compress.Set // the codings stored besides identity
	etag              string
	etagCoded         string // the ETag of every compressed form: weak
	lastModified      time.Time
	weight            uint32
}

// keepValidated is how long a stale object with a validator is kept for
// conditional revalidation beyond its stale windows.
const keepValidated = 10 * time.Minute

// age is the object's current age (RFC 9111 section 4.2.3).
func (o *object) age(now time.Time) time.Duration {
	return o.initialAge + max(now.Sub(o.responseTime), 0)
}

// usableUntil is when the object is no use even stale: after its stale
// windows and, with a validator, a keep period for revalidation.
func (o *object) usableUntil() time.Time {
	extra := max(o.swr, o.sie)
	if o.etag != "" || !o.lastModified.IsZero() {
		extra = max(extra, keepValidated)
	}
	return o.responseTime.Add(o.lifetime - o.initialAge + extra)
}

// hopHeaders are connection-specific headers (RFC 9110 section 7.6.1)
// plus what the cache recomputes or must not share between clients.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Content-Length", "Age", "Cache-Status", "Set-Cookie", "Surrogate-Key", "Surrogate-Control", "Cache-Tag",
}

// storedHeader copies the end-to-end headers of an origin response.
func storedHeader(src http.Header) http.Header {
	h := make(http.Header, len(src))
	for k, v := range src {
		h[k] = slices.Clip(slices.Clone(v))
	}
	for _, c := range src.Values("Connection") {
		for _, name := range strings.Split(c, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	return h
}

// tagsOf reads surrogate keys from Surrogate-Key (space separated) and
// Cache-Tag (comma separated) and adds the automatic tenant and host tags.
func tagsOf(h http.Header, tenant, host string) []string {
	tags := []string{host}
	if tenant != "" && tenant != host {
		tags = append(tags, tenant)
	}
	for _, name := range []string{"Surrogate-Key", "Cache-Tag"} {
		for _, v := range h.Values(name) {
			tags = append(tags, strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })...)
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}

// varyNames returns the canonical header names of the response's Vary
// field, sorted, without Accept-Encoding.
func varyNames(h http.Header) []string {
	var names []string
	for _, v := range h.Values("Vary") {
		for _, n := range strings.Split(v, ",") {
			n = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(n))
			if n != "" && n != "Accept-Encoding" {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// varyValues renders the request's values for the named headers.
func varyValues(r *http.Request, names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(strings.Join(r.Header.Values(n), ","))
		b.WriteByte(0)
	}
	return b.String()
}

// compressibleTypes are media types worth gzipping.
var compressibleTypes = []string{
	"text/", "application/json", "application/javascript", "application/x-javascript",
	"application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
	"application/ld+json", "application/manifest+json", "application/wasm", "image/svg+xml",
	"font/ttf", "font/otf", "application/vnd.ms-fontobject",
}

// minCompress is the smallest body worth compressing.
const minCompress = 256

func compressible(h http.Header, n int) bool {
	if n < minCompress {
		return false
	}
	if strings.Contains(strings.ToLower(strings.Join(h.Values("Cache-Control"), ",")), "no-transform") {
		return false
	}
	ct := strings.ToLower(h.Get("Content-Type"))
	for _, p := range compressibleTypes {
		if strings.HasPrefix(ct, p) {
			return true
		}
	}
	return false
}

// finish derives the serving headers and the weight of a built object.
func (o *object) finish() {
	defer o.weigh()
	if o.marker || o.hitForMiss {
		return
	}
	o.etag = o.header.Get("Etag")
	if lm, _, ok := fieldDate(o.header, "Last-Modified", o.responseTime); ok {
		o.lastModified = lm
	}
	o.hdrIdent = o.header.Clone()
	delete(o.hdrIdent, "Content-Encoding")
	// Targeted cache control is for Edge: the stored header keeps it (a
	// 304 merged into it is decided again), what is served does not (a
	// tenant that keeps CDN-Cache-Control gets it added per request).
	delete(o.hdrIdent, edgeCacheControl)
	delete(o.hdrIdent, cdnCacheControl)
	if bodyAllowed(o.status) {
		o.hdrIdent["Content-Length"] = []string{strconv.FormatInt(o.identLen, 10)}
	}
	o.have, o.hdrGzip, o.hdrBr, o.hdrZstd = 0, nil, nil, nil
	if o.gzipped {
		o.have = o.have.Add(compress.Gzip)
	}
	if o.br != nil {
		o.have = o.have.Add(compress.Brotli)
	}
	if o.zst != nil {
		o.have = o.have.Add(compress.Zstd)
	}
	if o.have == 0 {
		return
	}
	o.hdrIdent["Vary"] = addVary(o.header["Vary"])
	o.etagCoded = o.etag
	if o.etag != "" && !strings.HasPrefix(o.etag, "W/") {
		// A compressed representation is not byte-identical to the one
		// the origin tagged, so its validator is weak (as nginx does for
		// gzip); all codings share it, so a conditional request matches
		// whichever the client holds.
		o.etagCoded = "W/" + o.etag
	}
	coded := func(coding string, body []byte) http.Header {
		h := o.hdrIdent.Clone()
		h["Content-Encoding"] = []string{coding}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		if o.etagCoded != o.etag {
			h["Etag"] = []string{o.etagCoded}
		}
		return h
	}
	if o.gzipped {
		o.hdrGzip = coded("gzip", o.body)
	}
	if o.br != nil {
		o.hdrBr = coded("br", o.br)
	}
	if o.zst != nil {
		o.hdrZstd = coded("zstd", o.zst)
	}
}

// coded returns the serving header, ETag and body of o in coding e.
func (o *object) coded(e compress.Encoding) (http.Header, string, []byte) {
	switch e {
	case compress.Gzip:
		return o.hdrGzip, o.etagCoded, o.body
	case compress.Brotli:
		return o.hdrBr, o.etagCoded, o.br
	case compress.Zstd:
		return o.hdrZstd, o.etagCoded, o.zst
	}
	return o.hdrIdent, o.etag, nil
}

// Memory accounting. --cache-size (MaxBytes) bounds what L1 takes on the
// heap, so an object weighs what it holds, not just its body: for a 1 KB
// object the body is a third of it (issue 14: 64 MiB of cache cost 156
// MB of heap). The sizes below are Go's (amd64, Go 1.24+ maps) and
// otter's; TestL1MemoryBound checks the total stays within 1.25 × MaxBytes.
const (
	// entryOverhead is what otter keeps per entry besides the key's
	// bytes: its node (key and value words, weight, expiry, list links),
	// the hash-table slot and the frequency sketch's counters.
	entryOverhead = 112
	// mapOverhead and groupBytes size an http.Header: the map header,
	// then one group (8 control bytes, 8 slots of a string key and a
	// []string value) per 8 fields, as allocated (size class 352).
	mapOverhead = 48
	groupBytes  = 352
	// allocSlack is the allocator's rounding of a small object (a string,
	// a one-element []string) to its size class, on average.
	allocSlack = 8
)

// objectSize is an object struct as allocated.
var objectSize = int(unsafe.Sizeof(object{})) + allocSlack

// weigh sets o.weight to the heap the object holds: the struct, body and
// identity copy (capacity: what was allocated), the strings it owns, the
// stored header (strings counted once) and the serving header maps that
// share its strings. The key's bytes are added by the L1 weigher.
func (o *object) weigh() {
	n := objectSize + entryOverhead + cap(o.body) + cap(o.ident) + cap(o.br) + cap(o.zst) +
		len(o.tenant) + len(o.host) + len(o.pathQuery) + len(o.varyVals) + len(o.markReason) + 3*allocSlack
	n += 16*cap(o.tags) + 16*cap(o.vary) // their strings are the host's, tenant's and header values'
	n += headerBytes(o.header, true) + headerBytes(o.hdrIdent, false) + headerBytes(o.hdrGzip, false) +
		headerBytes(o.hdrBr, false) + headerBytes(o.hdrZstd, false)
	if o.etagCoded != o.etag {
		n += len(o.etagCoded) + allocSlack
	}
	o.weight = uint32(min(n, 1<<31))
}

// headerBytes is the heap an http.Header holds: its map and value slices,
// and the key and value strings when owned (a clone shares them).
func headerBytes(h http.Header, owned bool) int {
	if h == nil {
		return 0
	}
	n := mapOverhead + (len(h)+7)/8*groupBytes
	for k, v := range h {
		n += 16*cap(v) + allocSlack
		if owned {
			n += len(k) + allocSlack
			for _, s := range v {
				n += len(s) + allocSlack
			}
		}
	}
	return n
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// addVary returns the Vary values with Accept-Encoding added once.
func addVary(v []string) []string {
	for _, s := range v {
		if strings.Contains(strings.ToLower(s), "accept-encoding") {
			return v
		}
	}
	if len(v) == 0 {
		return []string{"Accept-Encoding"}
	}
	return []string{strings.Join(v, ", ") + ", Accept-Encoding"}
}

// gzipPools hold writers per level and readers.
type gzipPools struct {
	level   int
	writers sync.Pool
	readers sync.Pool
}

func (p *gzipPools) compress(b []byte) ([]byte, error) {
	zw, _ := p.writers.Get().(*gzip.Writer)
	var buf bytes.Buffer
	buf.Grow(len(b)/3 + 64)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(&buf, p.level); err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
	} else {
		zw.Reset(&buf)
	}
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	p.writers.Put(zw)
	return slices.Clip(buf.Bytes()), nil
}

// reader returns a pooled gzip reader over b; release it with putReader.
func (p *gzipPools) reader(b []byte) (*gzip.Reader, error) {
	zr, _ := p.readers.Get().(*gzip.Reader)
	if zr == nil {
		return gzip.NewReader(bytes.NewReader(b))
	}
	if err := zr.Reset(bytes.NewReader(b)); err != nil {
		return nil, err
	}
	return zr, nil
}

func (p *gzipPools) putReader(zr *gzip.Reader) { p.readers.Put(zr) }

// keepIdentity is the largest identity body kept next to its gzip form.
// Clients that do not send Accept-Encoding: gzip (API clients, load
// testers, some bots) would otherwise pay a gunzip on every hit, which
// for a small body costs more than writing it (building the Huffman
// tables dominates); the copy costs at most this much memory per object.
const keepIdentity = 8 << 10

// withIdentity sets o.ident to the identity body when o is gzipped and
// small enough; ident, when not nil, is that body already at hand.
func (p *gzipPools) withIdentity(o *object, ident []byte) {
	if !o.gzipped || o.identLen > keepIdentity || o.identLen < 0 {
		return
	}
	if ident == nil {
		var err error
		if ident, err = p.identity(o); err != nil {
			return // served by decompressing on every hit, as before
		}
	}
	o.ident = slices.Clip(ident)
}

// identity returns the decompressed body of o.
func (p *gzipPools) identity(o *object) ([]byte, error) {
	if !o.gzipped {
		return o.body, nil
	}
	if o.ident != nil {
		return o.ident, nil
	}
	zr, err := p.reader(o.body)
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	defer p.putReader(zr)
	out := make([]byte, 0, max(o.identLen, 0))
	buf := bytes.NewBuffer(out)
	if _, err := io.Copy(buf, zr); err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	return buf.Bytes(), nil
}

// gzipLen measures the decompressed length of a gzip body.
func (p *gzipPools) gzipLen(b []byte) (int64, error) {
	zr, err := p.reader(b)
	if err != nil {
		return 0, err
	}
	defer p.putReader(zr)
	return io.Copy(io.Discard, zr)
}

// Serialisation for L2/L3. The format is versioned by its first byte; an
// object in an unknown format is a miss, never an error for the client.

const formatV1 = 1

var errFormat = errors.New("cache: bad object encoding")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) strs(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}
func (e *encoder) flag(b bool) {
	if b {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// encode serialises o.
func (o *object) encode() []byte {
	e := encoder{b: make([]byte, 0, len(o.body)+512)}
	e.b = append(e.b, formatV1)
	e.str(o.tenant)
	e.str(o.host)
	e.str(o.pathQuery)
	e.strs(o.tags)
	e.uvarint(o.stamp)
	e.strs(o.vary)
	e.str(o.varyVals)
	e.flag(o.marker)
	e.varint(int64(o.status))
	e.uvarint(uint64(len(o.header)))
	for k, v := range o.header {
		e.str(k)
		e.strs(v)
	}
	e.flag(o.gzipped)
	e.varint(o.identLen)
	e.varint(o.responseTime.UnixNano())
	e.varint(int64(o.initialAge))
	e.varint(int64(o.lifetime))
	e.varint(int64(o.swr))
	e.varint(int64(o.sie))
	e.flag(o.mustReval)
	e.flag(o.noCache)
	e.uvarint(uint64(len(o.body)))
	e.b = append(e.b, o.body...)
	return e.b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errFormat
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errFormat
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errFormat
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) strs() []string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errFormat
		return nil
	}
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (d *decoder) flag() bool {
	if len(d.b) == 0 {
		d.err = errFormat
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

// decodeObject parses an encoded object; b must not be modified afterwards.
func decodeObject(b []byte) (*object, error) {
	if len(b) == 0 || b[0] != formatV1 {
		return nil, errFormat
	}
	d := decoder{b: b[1:]}
	o := &object{}
	o.tenant = d.str()
	o.host = d.str()
	o.pathQuery = d.str()
	o.tags = d.strs()
	o.stamp = d.uvarint()
	o.vary = d.strs()
	o.varyVals = d.str()
	o.marker = d.flag()
	o.status = int(d.varint())
	nh := d.uvarint()
	if nh > uint64(len(d.b)) {
		return nil, errFormat
	}
	o.header = make(http.Header, nh)
	for range nh {
		k := d.str()
		o.header[k] = d.strs()
	}
	o.gzipped = d.flag()
	o.identLen = d.varint()
	o.responseTime = time.Unix(0, d.varint())
	o.initialAge = time.Duration(d.varint())
	o.lifetime = time.Duration(d.varint())
	o.swr = time.Duration(d.varint())
	o.sie = time.Duration(d.varint())
	o.mustReval = d.flag()
	o.noCache = d.flag()
	o.body = d.bytes()
	if d.err != nil {
		return nil, d.err
	}
	o.finish()
	return o, nil
}

// Package transform is Edge's streaming HTML rewriter and the per-tenant
// rules that drive it.
//
// A tenant's [Rules] are written in YAML (see docs/transform.md), validated
// by [ParseRules], stored in canonical form ([Rules.Encode], [DecodeRules])
// and compiled once per version into an immutable [Program]. For every HTML
// response the proxy asks [Applies] whether the content type can be
// rewritten, unwraps the origin's encoding with [Decoder], picks the
// language with [Rules.Variant] / [Program.Variant], and streams the body
// through [Program.NewWriter].
//
// The writer tokenizes with its own allocation-free scanner, which finds
// the tokens golang.org/x/net/html's Tokenizer finds, and never holds the
// whole page: each Write is rewritten and written on before it returns,
// except for the last, incomplete token, and no token is buffered beyond
// [Config.MaxTokenBytes]. Bytes that no rule touches are copied through
// unchanged from the input. A rule that fails mid-stream
// (a panic in rule code, or a limit) is reported once to [Config.OnError],
// and the rest of the document passes through unmodified: a failing rule
// never truncates a page.
package transform

package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// opError is a failure to dial or to shake hands with an origin.
type opError struct {
	op      string // "dial" or "tls handshake"
	addr    string
	err     error
	timeout bool
}

func (e *opError) Error() string {
	if e.timeout {
		return "upstream " + e.op + " " + e.addr + ": timeout: " + e.err.Error()
	}
	return "upstream " + e.op + " " + e.addr + ": " + e.err.Error()
}
func (e *opError) Unwrap() error { return e.err }
func (e *opError) Timeout() bool { return e.timeout }

// IsTimeout reports whether err, from a pool's RoundTrip, is a timeout:
// connecting, TLS handshake, response headers, or a deadline of the request
// context. The proxy answers those with 504 and other errors with 502. A
// request cancelled by its client (context.Canceled) is not a timeout.
func IsTimeout(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var oe *opError
	if errors.As(err, &oe) {
		return oe.timeout
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Reason names the cause of a RoundTrip error in a few words for a log line,
// e.g. "x509: certificate signed by unknown authority",
// "connect: connection refused", "tls handshake timeout",
// "response header timeout".
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	var oe *opError
	isOp := errors.As(err, &oe)
	if isOp && oe.timeout {
		return oe.op + " timeout"
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		dnsErr    *net.DNSError
		recordErr tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "x509: certificate signed by unknown authority"
	case errors.As(err, &hostname):
		return hostname.Error()
	case errors.As(err, &invalid):
		return invalid.Error()
	case errors.As(err, &verify):
		return verify.Err.Error()
	case errors.As(err, &recordErr):
		return "tls: origin did not answer with TLS"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "dns: no such host " + dnsErr.Name
		}
		if dnsErr.IsTimeout {
			return "dns timeout"
		}
		return "dns: " + dnsErr.Err
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect: connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by origin"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "origin closed the connection"
	}
	if !isOp && IsTimeout(err) {
		if strings.Contains(err.Error(), "response header") {
			return "response header timeout"
		}
		return "timeout"
	}
	msg := err.Error()
	if isOp {
		msg = oe.op + ": " + innermost(oe.err).Error()
	}
	return msg
}

// innermost follows a chain of single wraps to its end.
func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// CommandType identifies a command. The list is append-only: a value, once
// released, keeps its meaning forever because old log entries carry it.
type CommandType uint16

// Command types. Append new ones at the end; see docs/raftstore.md for the
// checklist to follow when adding one.
const (
	CmdTenantAdd    CommandType = 1
	CmdTenantUpdate CommandType = 2
	CmdTenantRemove CommandType = 3
	CmdMemberPut    CommandType = 4
	CmdMemberRemove CommandType = 5
	CmdPurge        CommandType = 6
	CmdKVPut        CommandType = 7
	CmdKVDelete     CommandType = 8
	// CmdTenantAddV2 and CmdTenantUpdateV2 are tenant.add and
	// tenant.update carrying a field of protocol level 2 (a tenant's
	// EarlyHints): the same payloads and appliers, under a type that the
	// leader proposes only once every member applies level 2, since a
	// level-1 build would drop the field without a word.
	CmdTenantAddV2    CommandType = 9
	CmdTenantUpdateV2 CommandType = 10
)

func (c CommandType) String() string {
	switch c {
	case CmdTenantAdd:
		return "tenant.add"
	case CmdTenantUpdate:
		return "tenant.update"
	case CmdTenantRemove:
		return "tenant.remove"
	case CmdMemberPut:
		return "member.put"
	case CmdMemberRemove:
		return "member.remove"
	case CmdPurge:
		return "cache.purge"
	case CmdKVPut:
		return "kv.put"
	case CmdKVDelete:
		return "kv.delete"
	case CmdTenantAddV2:
		return "tenant.add.v2"
	case CmdTenantUpdateV2:
		return "tenant.update.v2"
	}
	return fmt.Sprintf("command(%d)", uint16(c))
}

// Protocol levels let a cluster run two releases at once during a rolling
// upgrade. Each command type needs a level; each member records the level
// its build runs (Member.Protocol); the leader proposes a command only when
// every server in the raft configuration runs a level that can apply it
// (see Store.ApplyEncoded and docs/raftstore.md).
const (
	// BaseProtocol applies command types 1..8 (level 2 adds 9 and 10). A member record written
	// before levels existed (no protocol field) counts as this level.
	BaseProtocol = 1
	// Protocol is the highest level this build applies. Raise it when a
	// command type is added, and give the new type that level in
	// CommandType.Protocol.
	Protocol = 2
)

// Protocol is the level a member must run to apply commands of type c; 0
// means this build does not know c at all.
func (c CommandType) Protocol() int {
	switch c {
	case CmdTenantAdd, CmdTenantUpdate, CmdTenantRemove, CmdMemberPut, CmdMemberRemove,
		CmdPurge, CmdKVPut, CmdKVDelete:
		return BaseProtocol
	case CmdTenantAddV2, CmdTenantUpdateV2:
		return 2
	}
	return 0
}

// base is the command a versioned type carries (tenant.add.v2 →
// tenant.add): what it applies as and how the audit trail names it.
func (c CommandType) base() CommandType {
	switch c {
	case CmdTenantAddV2:
		return CmdTenantAdd
	case CmdTenantUpdateV2:
		return CmdTenantUpdate
	}
	return c
}

// envelopeVersion is the version of the Command encoding itself.
const envelopeVersion = 1

// Command is the versioned envelope of every raft log entry. Time is stamped
// by the node that proposes the command, so every replica records the same
// created/updated times. RequestID makes a retried command idempotent: the
// state machine remembers recent IDs and answers a repeat with the first
// outcome instead of applying it twice.
type Command struct {
	Version   int             `json:"v"`
	Type      CommandType     `json:"t"`
	RequestID string          `json:"rid,omitempty"`
	Actor     string          `json:"actor,omitempty"`
	Time      time.Time       `json:"ts"`
	Payload   json.RawMessage `json:"p"`
}

// TenantUpdate is the payload of CmdTenantUpdate. Only non-nil fields change.
type TenantUpdate struct {
	Domain      string          `json:"domain"`
	ExpectIndex uint64          `json:"expect_index,omitempty"`
	Patch       tenantcfg.Patch `json:"patch"`
}

// DomainRef is the payload of commands that name one tenant.
type DomainRef struct {
	Domain string `json:"domain"`
}

// MemberRef is the payload of CmdMemberRemove.
type MemberRef struct {
	ID string `json:"id"`
}

// Purge is the payload of CmdPurge: which cached objects to invalidate.
// Tenant empty with All set means every object of every tenant.
type Purge struct {
	ID       string   `json:"id"`
	Tenant   string   `json:"tenant,omitempty"`
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	All      bool     `json:"all,omitempty"`
	Soft     bool     `json:"soft,omitempty"`
}

// KVPut is the payload of CmdKVPut. Term is the proposer's raft term.
type KVPut struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
	Term  uint64 `json:"term"`
}

// KVDelete is the payload of CmdKVDelete.
type KVDelete struct {
	Key  string `json:"key"`
	Term uint64 `json:"term"`
}

// Result is what applying a command returns to its proposer. Err carries an
// operation error (not found, conflict, …); the command still occupies its
// log index but changed nothing.
type Result struct {
	Index  uint64            `json:"index"`
	Tenant *tenantcfg.Tenant `json:"tenant,omitempty"`
	KV     *KV               `json:"kv,omitempty"`
	Err    *Error            `json:"err,omitempty"`
}

// Error is an operation error that survives encoding, so a follower that
// forwarded a command can map it to the same gRPC code as the leader.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap lets errors.Is match the sentinel of the error's kind.
func (e *Error) Unwrap() error {
	switch e.Kind {
	case kindNotFound:
		return ErrNotFound
	case kindExists:
		return ErrAlreadyExists
	case kindConflict:
		return ErrConflict
	case kindInvalid:
		return ErrInvalid
	case kindStale:
		return ErrStaleIndex
	case kindFenced:
		return ErrFenced
	case kindUnsupported:
		return ErrUnsupportedByCluster
	case kindRejected:
		return ErrRejectedEntry
	}
	return nil
}

const (
	kindNotFound = "not_found"
	kindExists   = "already_exists"
	kindConflict = "conflict"
	kindInvalid  = "invalid"
	kindStale    = "stale_index"
	kindFenced   = "fenced"
	// kindUnsupported: the leader refused to propose a command some
	// member cannot apply yet; it never reached the log.
	kindUnsupported = "unsupported_by_cluster"
	// kindRejected: a log entry the state machine could not decode; it
	// occupies its index and changed nothing.
	kindRejected = "rejected_entry"
)

// Sentinel errors, matched with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrConflict      = errors.New("owned by another tenant")
	// ErrInvalid is tenantcfg.ErrInvalid, so a tenant's FieldError and
	// the store's own invalid-input errors match the same sentinel.
	ErrInvalid    = tenantcfg.ErrInvalid
	ErrStaleIndex = errors.New("index does not match")
	ErrNotLeader  = errors.New("not the leader")
	ErrFenced     = errors.New("written in a later term")
	// ErrUnsupportedByCluster: a member of the raft configuration runs a
	// protocol level too old to apply the command (a rolling upgrade is
	// not finished); the message names the lagging members.
	ErrUnsupportedByCluster = errors.New("not supported by every cluster member yet")
	// ErrRejectedEntry: the command reached the log but no replica could
	// decode it, so every replica applied it as a no-op.
	ErrRejectedEntry = errors.New("log entry rejected")
)

func opErr(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// NewCommand builds an envelope around payload.
func NewCommand(t CommandType, requestID string, now time.Time, payload any) (*Command, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", t, err)
	}
	return &Command{Version: envelopeVersion, Type: t, RequestID: requestID, Time: now.UTC(), Payload: p}, nil
}

// Encode serialises the command for the raft log.
func (c *Command) Encode() ([]byte, error) { return json.Marshal(c) }

// DecodeCommand parses a log entry.
func DecodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	if c.Version != envelopeVersion {
		return nil, fmt.Errorf("decode command: unsupported envelope version %d", c.Version)
	}
	return &c, nil
}

// EncodeResult and DecodeResult carry a Result between nodes.
func EncodeResult(r *Result) ([]byte, error) { return json.Marshal(r) }

// DecodeResult is the inverse of EncodeResult.
func DecodeResult(b []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	return &r, nil
}

package raftstore

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestKVTermFencing(t *testing.T) {
	a := newApplier(t)
	if r := a.apply(CmdKVPut, "", KVPut{Key: "cert/shop.example", Value: []byte("v1"), Term: 3}); r.Err != nil {
		t.Fatal(r.Err)
	}
	// A deposed leader (older term) finishing late must not overwrite.
	r := a.apply(CmdKVPut, "", KVPut{Key: "cert/shop.example", Value: []byte("stale"), Term: 2})
	if !errors.Is(r.Err, ErrFenced) {
		t.Fatalf("older-term put: err = %v, want ErrFenced", r.Err)
	}
	if r := a.apply(CmdKVDelete, "", KVDelete{Key: "cert/shop.example", Term: 2}); !errors.Is(r.Err, ErrFenced) {
		t.Fatalf("older-term delete: err = %v, want ErrFenced", r.Err)
	}
	if r := a.apply(CmdKVPut, "", KVPut{Key: "cert/shop.example", Value: []byte("v2"), Term: 3}); r.Err != nil {
		t.Fatal(r.Err)
	}
	a.apply(CmdKVPut, "", KVPut{Key: "acme/account", Value: []byte("k"), Term: 3})
	v := a.f.view.Load()
	if e, ok := v.Get("cert/shop.example"); !ok || string(e.Value) != "v2" {
		t.Fatalf("Get = %+v %v", e, ok)
	}
	if keys := v.Keys("cert/"); len(keys) != 1 || keys[0] != "cert/shop.example" {
		t.Fatalf("Keys(cert/) = %v", keys)
	}

	// Purges are kept in order and survive a snapshot with the KV space.
	a.apply(CmdPurge, "", Purge{ID: "p1", Tenant: "shop.example", Prefixes: []string{"/img/"}})
	a.apply(CmdPurge, "", Purge{ID: "p2", All: true})
	v = a.f.view.Load()
	ps := v.Purges(0)
	if len(ps) != 2 || ps[0].ID != "p1" || ps[1].ID != "p2" || ps[1].Index <= ps[0].Index {
		t.Fatalf("purges = %+v", ps)
	}
	if got := v.Purges(ps[0].Index); len(got) != 1 || got[0].ID != "p2" {
		t.Fatalf("Purges(after p1) = %+v", got)
	}
	snap, _ := a.f.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := newFSM(nil, nil)
	if err := b.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	rv := b.view.Load()
	if e, ok := rv.Get("cert/shop.example"); !ok || string(e.Value) != "v2" || e.Term != 3 {
		t.Fatalf("restored kv = %+v %v", e, ok)
	}
	if len(rv.Purges(0)) != 2 {
		t.Fatalf("restored purges = %+v", rv.Purges(0))
	}
	if r := a.apply(CmdKVDelete, "", KVDelete{Key: "cert/shop.example", Term: 4}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, ok := a.f.view.Load().Get("cert/shop.example"); ok {
		t.Fatal("delete left the key")
	}
}

package certs

import (
	"context"
	"strings"
	"sync"
	"time"
)

// renewWorkers bounds the orders the renewal loop runs at once, so one slow
// or failing domain never holds up the others.
const renewWorkers = 4

// Run is the renewal loop. It does work only while this node leads: it
// restores an empty store from the Mirror, resumes orders a previous leader
// left in flight, renews certificates ahead of expiry, retries failed ones
// after their backoff and retires certificates of tenants that are gone or
// suspended for longer than Grace. It returns when ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	for {
		if m.cfg.Leadership.IsLeader() {
			m.Tick(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick runs one pass of the renewal loop (Run calls it every
// CheckInterval; tests and `edgectl` may call it directly).
func (m *Manager) Tick(ctx context.Context) {
	term, err := m.leaderTerm()
	if err != nil {
		return
	}
	if m.restoredTerm != term {
		m.restoreAll(ctx, term)
		m.restoredTerm = term
	}
	now := time.Now()
	sem := make(chan struct{}, renewWorkers)
	var wg sync.WaitGroup
	for _, k := range m.cfg.Store.Keys(certPrefix) {
		if ctx.Err() != nil {
			break
		}
		domain := k[len(certPrefix):]
		r, _, err := m.load(domain)
		if err != nil {
			continue
		}
		if !m.tracked(ctx, r, now, term) {
			continue
		}
		mode := modeScheduled
		if r.Source == SourceImported {
			continue
		}
		if r.Order == nil && !m.due(r, now) {
			continue
		}
		if r.Order == nil && now.Before(r.RetryAt) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := m.order(ctx, domain, mode); err != nil {
				m.log.Debug("renewal", "domain", domain, "err", err)
			}
		}()
	}
	wg.Wait()
}

// tracked applies the license rule to r: a certificate whose domain lost
// its license is marked inactive, deleted after Grace, and never renewed.
// Wildcard certificates are imported by operators and exempt. It reports
// whether r is still a candidate for renewal.
func (m *Manager) tracked(ctx context.Context, r *record, now time.Time, term uint64) bool {
	if strings.HasPrefix(r.Domain, "*.") {
		return true
	}
	if m.cfg.Licenses.Active(r.Domain) {
		if !r.InactiveSince.IsZero() {
			r.InactiveSince = time.Time{}
			if err := m.save(ctx, r, term); err != nil {
				m.log.Warn("reactivating certificate", "domain", r.Domain, "err", err)
			}
		}
		return true
	}
	switch {
	case r.InactiveSince.IsZero():
		r.InactiveSince = now.UTC()
		if err := m.save(ctx, r, term); err != nil {
			m.log.Warn("marking certificate inactive", "domain", r.Domain, "err", err)
		}
		m.log.Info("tenant inactive, certificate retires after the grace period", "domain", r.Domain, "grace", m.cfg.Grace)
	case now.Sub(r.InactiveSince) > m.cfg.Grace:
		if err := m.remove(ctx, r.Domain, term); err != nil {
			m.log.Warn("retiring certificate", "domain", r.Domain, "err", err)
		} else {
			m.log.Info("certificate retired", "domain", r.Domain)
		}
	}
	return false
}

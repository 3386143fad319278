package dnscache

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
	"time"
)

// hostsTable is the parsed hosts file, re-read at most once per MinTTL.
type hostsTable struct {
	path     string
	loadedAt time.Time
	byName   map[string][]netip.Addr
}

// lookupHostsFile returns the hosts-file addresses of name (lowercase).
func (r *Resolver) lookupHostsFile(name string) []netip.Addr {
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	now := r.cfg.Now()
	if r.hosts.byName == nil || now.Sub(r.hosts.loadedAt) >= r.cfg.MinTTL {
		r.hosts.byName = parseHostsFile(r.hosts.path)
		r.hosts.loadedAt = now
	}
	addrs := r.hosts.byName[name]
	if len(addrs) == 0 {
		return nil
	}
	return append([]netip.Addr(nil), addrs...)
}

// parseHostsFile reads "address name [alias...]" lines; a missing or
// unreadable file is an empty table. IPv4 addresses are listed first.
func parseHostsFile(path string) map[string][]netip.Addr {
	m := make(map[string][]netip.Addr)
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		ip = ip.WithZone("").Unmap()
		for _, n := range fields[1:] {
			n = normalize(n)
			addrs := m[n]
			if ip.Is4() {
				i := 0
				for i < len(addrs) && addrs[i].Is4() {
					i++
				}
				addrs = append(addrs[:i], append([]netip.Addr{ip}, addrs[i:]...)...)
			} else {
				addrs = append(addrs, ip)
			}
			m[n] = addrs
		}
	}
	return m
}

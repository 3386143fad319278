package logship

import (
	"fmt"
	"strings"
)

// ParseLabels parses the --loki-labels flag value, "k=v,k2=v2", into a
// label map, with the same rules New applies (legacy Prometheus names,
// non-empty values, "level" and "__*" reserved). An empty string yields an
// empty map.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			return nil, fmt.Errorf("logship: loki label %q: want key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("logship: loki label %q set twice", k)
		}
		out[k] = v
	}
	if _, err := baseLabels(out); err != nil {
		return nil, err
	}
	return out, nil
}

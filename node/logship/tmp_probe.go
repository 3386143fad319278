package logship

import (
	_ "github.com/grafana/loki-client-go/loki"
	_ "github.com/grafana/loki/pkg/push"
)

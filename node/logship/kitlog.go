package logship

import (
	"context"
	"fmt"
	"log/slog"
)

// kitLogger adapts the go-kit logger interface loki-client-go logs through
// (Log(keyvals ...any) error, with a "level" key from go-kit's level
// package) to slog.
type kitLogger struct{ l *slog.Logger }

func (k kitLogger) Log(keyvals ...any) error {
	level := slog.LevelInfo
	msg := "loki client"
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		switch key {
		case "level":
			switch fmt.Sprint(keyvals[i+1]) {
			case "debug":
				level = slog.LevelDebug
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
		case "msg":
			msg = "loki client: " + fmt.Sprint(keyvals[i+1])
		default:
			attrs = append(attrs, key, keyvals[i+1])
		}
	}
	k.l.Log(context.Background(), level, msg, attrs...)
	return nil
}

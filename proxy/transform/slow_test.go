package transform

import (
	"testing"
	"time"
)

func TestSlowOneByte(t *testing.T) {
	rules := testProgram(t, Config{MaxTokenBytes: 1024})
	in := readFile(t, "blog.html")
	start := time.Now()
	rewrite(t, rules, request(rules, "shop.example", "/fr/"), in, 1, 1)
	t.Log(time.Since(start))
}

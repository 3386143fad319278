package transform

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestHangHunt(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	seeds := [][]byte{readFile(t, "blog.html"), readFile(t, "malformed.html"), readFile(t, "lookalike.html"), readFile(t, "cdata-template.html")}
	noop, _ := Compile(&Rules{RewriteLinks: true}, Config{MaxTokenBytes: 1024})
	rules := testProgram(t, Config{MaxTokenBytes: 1024})
	for iter := 0; iter < 3000; iter++ {
		in := bytes.Clone(seeds[rng.IntN(len(seeds))])
		for k := rng.IntN(8); k >= 0; k-- {
			switch rng.IntN(3) {
			case 0:
				i := rng.IntN(len(in))
				in = in[:i]
			case 1:
				i, j := rng.IntN(len(in)), rng.IntN(len(in))
				in = append(in[:i:i], in[j:]...)
			case 2:
				i := rng.IntN(len(in) + 1)
				in = append(in[:i:i], append([]byte{byte(rng.IntN(256))}, in[i:]...)...)
			}
			if len(in) == 0 {
				in = []byte("<")
			}
		}
		chunks := []int{rng.IntN(300) + 1, rng.IntN(4096) + 1}
		done := make(chan struct{})
		go func() {
			rewrite(t, noop, Request{Path: "/"}, in, chunks...)
			for _, v := range variants {
				rewrite(t, rules, request(rules, v.host, v.path), in, chunks...)
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			os.WriteFile("/tmp/hang.html", in, 0o644)
			t.Fatalf("hang with chunks %v, input in /tmp/hang.html", chunks)
		}
	}
}

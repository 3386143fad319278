package edgev1

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Snapshot files (SnapshotService.Save/Restore, edgectl snapshot, S3
// backups) are the state stream followed by one trailer line:
//
//	edge-snapshot-sha256 <hex sha256 of the stream> <stream size>\n
//
// so a truncated or altered file is detected before anything changes.
const snapshotTrailerPrefix = "edge-snapshot-sha256 "

// SnapshotTrailer returns the trailer line for a stream of size bytes
// whose SHA-256 is sum.
func SnapshotTrailer(sum []byte, size int64) string {
	return fmt.Sprintf("%s%s %d\n", snapshotTrailerPrefix, hex.EncodeToString(sum), size)
}

// VerifySnapshot checks the trailer at the end of r (total bytes long)
// against everything before it and returns the stream's size and hex
// SHA-256.
func VerifySnapshot(r io.ReaderAt, total int64) (size int64, sum string, err error) {
	const maxTrailer = 128
	off := max(total-maxTrailer, 0)
	tail := make([]byte, total-off)
	if _, err := r.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, "", err
	}
	if len(tail) == 0 || tail[len(tail)-1] != '\n' {
		return 0, "", errors.New("truncated snapshot: the checksum trailer is missing")
	}
	i := strings.LastIndex(string(tail[:len(tail)-1]), "\n")
	line := string(tail[i+1 : len(tail)-1])
	parts := strings.Fields(strings.TrimPrefix(line, snapshotTrailerPrefix))
	if !strings.HasPrefix(line, snapshotTrailerPrefix) || len(parts) != 2 {
		return 0, "", errors.New("truncated or foreign snapshot: the checksum trailer is missing")
	}
	size, err = strconv.ParseInt(parts[1], 10, 64)
	if err != nil || size != off+int64(i+1) {
		return 0, "", fmt.Errorf("truncated snapshot: the trailer says %s bytes, found %d", parts[1], off+int64(i+1))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return 0, "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != parts[0] {
		return 0, "", fmt.Errorf("corrupt snapshot: sha256 %s, the trailer says %s", got, parts[0])
	}
	return size, parts[0], nil
}

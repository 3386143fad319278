// Package edgev1 holds the admin API of an Edge cluster: the protobuf
// definition (edge.proto) and its generated Go code. Regenerate with
// `make proto`; never edit the .pb.go files by hand.
package edgev1

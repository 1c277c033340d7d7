//go:build race

package plan

// The race detector slows the property test tenfold: fewer sequences.
func init() { propSequences = 300 }

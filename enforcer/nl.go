package enforcer

import "github.com/openmud/mud/internal/nftbatch"

// BatchError is returned when the kernel rejected a batch. Nothing of the
// batch was applied (nf_tables transactions are all-or-nothing).
type BatchError = nftbatch.BatchError

// Package plan is the enforcer's planner: the one owner of every object of
// table inet mud and table bridge mud, and the one place that decides what
// a change does to them. It holds the model (policies, devices, the
// addresses of peers), the ids it allocates (peers, groups of peers
// sharing an address, dispatch targets) and, by object, the chains and
// set elements the kernel holds; from a change it computes a Plan, the one
// transaction that brings the kernel from what it holds to what the
// changed model needs, and it adopts the change when told the kernel
// committed it (Planner.Commit). A plan that is not committed changes
// nothing.
//
// A Plan is a plain value: the tables to replace (a rebuild), the chains
// to create, flush or delete with their rules, the elements to delete or
// add per set with typed keys (keys.go), values and expiries, and the
// devices whose flows must end. Rules carry their nft text and their
// expressions (github.com/google/nftables/expr values); nothing here
// marshals or sends anything: package nftwire encodes plans, package
// enforcer sends them.
//
// Tables is an in-memory model of our two tables that applies plans as
// the kernel would, refusing what the kernel refuses; the tests use it to
// check, without root, that any sequence of incremental plans leaves what
// a rebuild installs, and the enforcer to compare the kernel's tables,
// read back, with the planner's (Verify). The layout itself (which chains,
// maps and rules, and why) is described in the enforcer's README.md.
package plan

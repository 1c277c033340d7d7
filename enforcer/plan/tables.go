package plan

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables/expr"
)

// Tables is an in-memory model of our two tables as the kernel holds
// them. Apply applies a plan as the kernel would: all of it or nothing,
// refusing what the kernel refuses (a missing set, chain or element, a
// chain still referred to, an element clashing with one of another value
// or a range it overlaps) and, stricter than the kernel, a chain created
// twice. Tests check sequences of plans against it; the enforcer reads
// the kernel's tables back into one and compares them with the
// planner's (Verify).
type Tables struct {
	t map[Family]*Table
}

// Table is one table of a Tables.
type Table struct {
	Sets   map[string]*SetState
	Chains map[string]*Chain
}

// SetState is a set and its elements.
type SetState struct {
	Set   Set
	Elems map[Key]*Elem
}

// NewTables returns an empty model: no tables.
func NewTables() *Tables { return &Tables{t: map[Family]*Table{}} }

// Table returns a table (nil: it does not exist).
func (ts *Tables) Table(f Family) *Table { return ts.t[f] }

// PutTable creates a table (empty) if it does not exist, and returns it.
func (ts *Tables) PutTable(f Family) *Table {
	t := ts.t[f]
	if t == nil {
		t = &Table{Sets: map[string]*SetState{}, Chains: map[string]*Chain{}}
		ts.t[f] = t
	}
	return t
}

// PutSet adds a set to a table (replacing one of the same name).
func (t *Table) PutSet(s Set) *SetState {
	st := &SetState{Set: s, Elems: map[Key]*Elem{}}
	t.Sets[s.Name] = st
	return st
}

// PutChain adds a chain (replacing one of the same name).
func (t *Table) PutChain(c *Chain) { t.Chains[c.ID.Name] = c }

// clone is a deep copy (elements are immutable and shared).
func (ts *Tables) clone() *Tables {
	out := NewTables()
	for f, t := range ts.t {
		nt := out.PutTable(f)
		for n, s := range t.Sets {
			nt.Sets[n] = &SetState{Set: s.Set, Elems: maps.Clone(s.Elems)}
		}
		for n, c := range t.Chains {
			cc := *c
			cc.Rules = slices.Clone(c.Rules)
			nt.Chains[n] = &cc
		}
	}
	return out
}

// Expire removes the elements whose timeout has run out at now.
func (ts *Tables) Expire(now time.Time) {
	for _, t := range ts.t {
		for _, s := range t.Sets {
			for k, e := range s.Elems {
				if !e.Expires.IsZero() && !e.Expires.After(now) {
					delete(s.Elems, k)
				}
			}
		}
	}
}

// Apply applies a plan as one transaction at p.Now (elements expired by
// then are gone first). On an error nothing changes.
func (ts *Tables) Apply(p *Plan) error {
	n := ts.clone()
	n.Expire(p.Now)
	if err := n.apply(p); err != nil {
		return err
	}
	ts.t = n.t
	return nil
}

var (
	errNoEnt = errors.New("no such file or directory")
	errExist = errors.New("file exists")
	errBusy  = errors.New("device or resource busy")
	errInval = errors.New("invalid argument")
)

func (ts *Tables) apply(p *Plan) error {
	for _, t := range p.Tables {
		delete(ts.t, t.Family)
		nt := ts.PutTable(t.Family)
		for _, s := range t.Sets {
			nt.PutSet(s)
		}
	}
	for _, se := range p.DelElems {
		s, err := ts.set(se.Set)
		if err != nil {
			return fmt.Errorf("deleting elements: %w", err)
		}
		for _, e := range se.Elems {
			if _, ok := s.Elems[e.Key]; !ok {
				if se.Destroy {
					continue
				}
				return fmt.Errorf("deleting element %s from %s: %w", e.Key, se.Set, errNoEnt)
			}
			delete(s.Elems, e.Key)
		}
	}
	for _, c := range p.AddChains {
		t := ts.t[c.ID.Family]
		if t == nil {
			return fmt.Errorf("adding chain %s: table: %w", c.ID, errNoEnt)
		}
		if _, ok := t.Chains[c.ID.Name]; ok {
			return fmt.Errorf("adding chain %s: %w", c.ID, errExist)
		}
		t.Chains[c.ID.Name] = &Chain{ID: c.ID, Hook: c.Hook}
	}
	for _, c := range p.FlushChains {
		have, err := ts.chain(c.ID)
		if err != nil {
			return fmt.Errorf("flushing chain: %w", err)
		}
		have.Rules = nil
	}
	for _, id := range p.DelChains {
		if _, err := ts.chain(id); err != nil {
			return fmt.Errorf("deleting chain: %w", err)
		}
		if by := ts.referrer(id); by != "" {
			return fmt.Errorf("deleting chain %s, which %s refers to: %w", id, by, errBusy)
		}
		delete(ts.t[id.Family].Chains, id.Name)
	}
	for _, l := range [][]*Chain{p.FlushChains, p.AddChains} {
		for _, c := range l {
			have, err := ts.chain(c.ID)
			if err != nil {
				return fmt.Errorf("adding rules: %w", err)
			}
			for _, r := range c.Rules {
				if err := ts.checkRule(c.ID.Family, r); err != nil {
					return fmt.Errorf("adding a rule to chain %s: %w", c.ID, err)
				}
				have.Rules = append(have.Rules, r)
			}
			if c.sig != "" {
				have.sig = c.sig // the rules are c's
			} else {
				have.sign()
			}
		}
	}
	for _, se := range p.AddElems {
		s, err := ts.set(se.Set)
		if err != nil {
			return fmt.Errorf("adding elements: %w", err)
		}
		for _, e := range se.Elems {
			if err := ts.checkElem(se.Set, s, e, p.Now); err != nil {
				return fmt.Errorf("adding element %s to %s: %w", e.Key, se.Set, err)
			}
			if old, ok := s.Elems[e.Key]; ok && !old.sameValue(e) {
				return fmt.Errorf("adding element %s to %s: it has another value: %w", e.Key, se.Set, errExist)
			}
			// an element of the same value gets the new timeout (Linux 6.10)
			s.Elems[e.Key] = e
		}
	}
	return nil
}

func (ts *Tables) set(r SetRef) (*SetState, error) {
	if t := ts.t[r.Family]; t != nil {
		if s := t.Sets[r.Name]; s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("set %s: %w", r, errNoEnt)
}

func (ts *Tables) chain(id ChainRef) (*Chain, error) {
	if t := ts.t[id.Family]; t != nil {
		if c := t.Chains[id.Name]; c != nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("chain %s: %w", id, errNoEnt)
}

// referrer names a rule or verdict map element that jumps to a chain.
func (ts *Tables) referrer(id ChainRef) string {
	t := ts.t[id.Family]
	for _, c := range t.Chains {
		if c.ID == id {
			continue
		}
		for _, r := range c.Rules {
			if v := r.verdict; (v.Kind == VerdictJump || v.Kind == VerdictGoto) && v.Chain == id.Name {
				return "a rule of chain " + c.ID.Name
			}
		}
	}
	for _, s := range t.Sets {
		for _, e := range s.Elems {
			if v := e.Verdict; (v.Kind == VerdictJump || v.Kind == VerdictGoto) && v.Chain == id.Name {
				return "an element of map " + s.Set.Name
			}
		}
	}
	return ""
}

// checkRule refuses a rule that jumps to a missing chain or looks up a
// missing set.
func (ts *Tables) checkRule(f Family, r Rule) error {
	t := ts.t[f]
	if v := r.verdict; v.Kind == VerdictJump || v.Kind == VerdictGoto {
		if t.Chains[v.Chain] == nil {
			return fmt.Errorf("%s: chain %s: %w", v, v.Chain, errNoEnt)
		}
	}
	for _, fr := range r.frags {
		for _, x := range fr.exprs {
			var set string
			switch e := x.(type) {
			case *expr.Lookup:
				set = e.SetName
			case *expr.Dynset:
				set = e.SetName
			}
			if set != "" && t.Sets[set] == nil {
				return fmt.Errorf("set %s: %w", set, errNoEnt)
			}
		}
	}
	return nil
}

// checkElem refuses an element that does not fit its set.
func (ts *Tables) checkElem(r SetRef, s *SetState, e *Elem, now time.Time) error {
	switch {
	case s.Set.Dynamic:
		return fmt.Errorf("the packet path fills this set: %w", errInval)
	case e.Key == nil || !e.Key.Fits(s.Set.Key):
		return fmt.Errorf("key of another type: %w", errInval)
	case !e.Expires.IsZero() && !s.Set.Timeout:
		return fmt.Errorf("a timeout in a set without timeouts: %w", errInval)
	case !e.Expires.IsZero() && !e.Expires.After(now):
		return fmt.Errorf("a timeout that has run out: %w", errInval)
	case s.Set.Value == ValueMark && (e.Mark == 0 || e.Verdict.Kind != VerdictNone):
		return fmt.Errorf("a data map element needs a mark: %w", errInval)
	case s.Set.Value == ValueVerdict && e.Mark != 0:
		return fmt.Errorf("a verdict map element has a mark: %w", errInval)
	case s.Set.Value == ValueNone && (e.Mark != 0 || e.Verdict.Kind != VerdictNone):
		return fmt.Errorf("a set element has a value: %w", errInval)
	}
	switch v := e.Verdict; {
	case s.Set.Value == ValueVerdict && v.Kind != VerdictJump && v.Kind != VerdictGoto:
		return fmt.Errorf("verdict %s in a map of jumps: %w", v, errInval)
	case v.Kind == VerdictJump || v.Kind == VerdictGoto:
		if ts.t[r.Family].Chains[v.Chain] == nil {
			return fmt.Errorf("%s: chain %s: %w", v, v.Chain, errNoEnt)
		}
	}
	if nk, ok := e.Key.(NetKey); ok && s.Set.Interval {
		for k := range s.Elems {
			if o := k.(NetKey); o != nk && o.ID == nk.ID && !o.Last.Less(nk.First) && !nk.Last.Less(o.First) {
				return fmt.Errorf("overlaps %s: %w", o, errExist)
			}
		}
	}
	return nil
}

// Tables is the layout the planner has installed, as the kernel should
// hold it.
func (pl *Planner) Tables() *Tables {
	if pl.inst == nil {
		return NewTables()
	}
	return tablesOf(pl.inst, pl.opts(time.Time{}))
}

// tablesOf is the tables a complete set of objects makes up.
func tablesOf(all *owners, o buildOpts) *Tables {
	ts := NewTables()
	for _, f := range Families {
		t := ts.PutTable(f)
		for _, s := range setDefs(f, o.twoStage, o.ruleCounters, o.flowSize, o.acct) {
			t.PutSet(s)
		}
	}
	all.all(func(pc *pieces) {
		for _, c := range pc.chains {
			ts.t[c.ID.Family].PutChain(c)
		}
		for _, x := range pc.elems {
			if s := ts.t[x.ref.Family].Sets[x.ref.Name]; s != nil {
				s.Elems[x.elem.Key] = x.elem
			}
		}
	})
	return ts
}

// Diff lists how got differs from ts, exactly: tables, sets, chains with
// their hooks and rules, elements with their values and expiries. Elements
// due within three seconds of now, or expired (either may still hold
// them), and those of dynamic sets are not compared.
func (ts *Tables) Diff(got *Tables, now time.Time) []string {
	return compareTables(ts, got, now, true, 0)
}

// Verify lists, up to limit, how the kernel's tables as read back (got:
// chains with as many rules as the kernel has, whatever they are) differ
// from the planner's (want): a table missing, chains missing or
// unexpected or with another number of rules, sets unexpected, elements
// missing, unexpected or of another value. Elements due within a few seconds may
// be gone; dynamic sets are not compared.
func Verify(want, got *Tables, now time.Time, limit int) []string {
	return compareTables(want, got, now, false, limit)
}

// sameDecl tells whether two sets are declared alike. The size of a set
// the planner fills is the capacity its last rebuild chose from the
// number of elements then, not part of what the set holds: it is not
// compared.
func sameDecl(a, b Set) bool {
	if !a.Dynamic {
		a.Size = 0
	}
	if !b.Dynamic {
		b.Size = 0
	}
	return a == b
}

func compareTables(want, got *Tables, now time.Time, exact bool, limit int) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	due := func(e *Elem) bool { return !e.Expires.IsZero() && !e.Expires.After(now.Add(expiryMargin+time.Second)) }
	for _, f := range Families {
		w, g := want.t[f], got.t[f]
		switch {
		case w == nil && g == nil:
			continue
		case g == nil:
			add("table %s %s missing", f, tableName)
			continue
		case w == nil:
			add("unexpected table %s %s", f, tableName)
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(w.Chains)) {
			wc, gc := w.Chains[name], g.Chains[name]
			switch {
			case gc == nil:
				add("chain %s missing from table %s %s", name, f, tableName)
			case len(gc.Rules) != len(wc.Rules):
				add("chain %s of table %s %s has %d rules, want %d", name, f, tableName, len(gc.Rules), len(wc.Rules))
			case exact && (gc.Hook == nil) != (wc.Hook == nil), exact && gc.Hook != nil && *gc.Hook != *wc.Hook:
				add("chain %s of table %s %s has another hook", name, f, tableName)
			case exact && (gc.sig == "" || gc.sig != wc.sig):
				for i := range wc.Rules {
					if a, b := gc.Rules[i].Text(), wc.Rules[i].Text(); a != b {
						add("rule %d of chain %s of table %s %s is %q, want %q", i+1, name, f, tableName, a, b)
						break
					}
				}
			}
		}
		for _, name := range slices.Sorted(maps.Keys(g.Chains)) {
			if w.Chains[name] == nil {
				add("unexpected chain %s in table %s %s", name, f, tableName)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(g.Sets)) {
			gs, ws := g.Sets[name], w.Sets[name]
			if ws == nil {
				add("unexpected set %s in table %s %s", name, f, tableName)
				continue
			}
			if exact && !sameDecl(gs.Set, ws.Set) {
				add("set %s of table %s %s is declared differently", name, f, tableName)
			}
			if gs.Set.Dynamic || ws.Set.Dynamic {
				continue
			}
			for k, ge := range gs.Elems {
				we := ws.Elems[k]
				switch {
				case we == nil:
					if !exact || !due(ge) {
						add("unexpected element %s in set %s of table %s %s", k, name, f, tableName)
					}
				case !ge.sameValue(we):
					if !exact || !due(ge) && !due(we) {
						add("element %s of map %s of table %s %s has another value", k, name, f, tableName)
					}
				case exact && !ge.Expires.Equal(we.Expires) && !due(ge) && !due(we):
					add("element %s of set %s of table %s %s expires at another time", k, name, f, tableName)
				}
			}
			for k, we := range ws.Elems {
				if _, ok := gs.Elems[k]; !ok && !due(we) {
					add("element %s missing from set %s of table %s %s", k, name, f, tableName)
				}
			}
		}
		if exact {
			for _, name := range slices.Sorted(maps.Keys(w.Sets)) {
				if g.Sets[name] == nil {
					add("set %s missing from table %s %s", name, f, tableName)
				}
			}
		}
	}
	slices.Sort(diffs)
	if limit > 0 && len(diffs) > limit {
		diffs = diffs[:limit]
	}
	return diffs
}

func sortedKeys(m map[Key]*Elem) []Key {
	ks := slices.Collect(maps.Keys(m))
	slices.SortFunc(ks, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
	return ks
}

// String lists the tables in nft's syntax, sorted (for test failures).
func (ts *Tables) String() string {
	var b strings.Builder
	for _, f := range Families {
		t := ts.t[f]
		if t == nil {
			continue
		}
		fmt.Fprintf(&b, "table %s %s {\n", f, tableName)
		for _, name := range slices.Sorted(maps.Keys(t.Sets)) {
			s := t.Sets[name]
			fmt.Fprintf(&b, "\tset %s { %s }\n", name, s.Set.decl)
			for _, k := range sortedKeys(s.Elems) {
				e := s.Elems[k]
				fmt.Fprintf(&b, "\t\t%s", elemText(&Elem{Key: e.Key, Mark: e.Mark, Verdict: e.Verdict}, time.Time{}))
				if !e.Expires.IsZero() {
					fmt.Fprintf(&b, " expires %s", e.Expires.Format("15:04:05.000"))
				}
				b.WriteString("\n")
			}
		}
		for _, name := range slices.Sorted(maps.Keys(t.Chains)) {
			c := t.Chains[name]
			fmt.Fprintf(&b, "\tchain %s {\n", name)
			if c.Hook != nil {
				fmt.Fprintf(&b, "\t\t%s\n", c.Hook.Text())
			}
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "\t\t%s\n", r.Text())
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

package policy

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/mkimage/mkimage/internal/cluster/plan"
)

// Table is the nftables table (family ip) policy owns. Rules go in through
// netlink with github.com/google/nftables: the initramfs has no iptables
// or nft binary, netlink needs none, and the kernel keeps the rules across
// switch_root. The table is deleted and rebuilt in one batch, so applying
// twice gives the same ruleset and a reader never sees half of it.
const Table = "nodeinit"

// Netfilter installs the FORWARD filter and NAT masquerade rules.
func Netfilter(env Env) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	return installRules(c, env.Node)
}

func installRules(c *nftables.Conn, p plan.Plan) error {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("listing nftables tables (kernel without nf_tables?): %w", err)
	}
	for _, t := range tables {
		if t.Name == Table {
			c.DelTable(t)
		}
	}
	filter := len(p.Forward) > 0 || p.ForwardPolicy == "drop"
	if !filter && len(p.NAT) == 0 {
		return c.Flush()
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table})
	if filter {
		pol := nftables.ChainPolicyAccept
		if p.ForwardPolicy == "drop" {
			pol = nftables.ChainPolicyDrop
		}
		ch := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &pol})
		// Replies to accepted connections pass before any rule.
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		for i, r := range p.Forward {
			m, ok, err := match(r.In, r.Out, r.Source, r.Destination)
			if err != nil {
				return fmt.Errorf("forward rule %d: %w", i+1, err)
			}
			if !ok {
				continue
			}
			var v expr.Any
			switch r.Action {
			case "accept":
				v = &expr.Verdict{Kind: expr.VerdictAccept}
			case "drop":
				v = &expr.Verdict{Kind: expr.VerdictDrop}
			case "reject":
				// ICMP port unreachable, as iptables' and nft's plain reject.
				v = &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}
			default:
				return fmt.Errorf("forward rule %d: unknown action %q (expected accept, drop or reject)", i+1, r.Action)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(m, v)})
		}
	}
	if len(p.NAT) > 0 {
		pol := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &pol})
		for i, r := range p.NAT {
			m, ok, err := match("", r.Out, r.Source, r.Destination)
			if err != nil {
				return fmt.Errorf("nat rule %d: %w", i+1, err)
			}
			if ok {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(m, &expr.Masq{})})
			}
		}
	}
	return c.Flush()
}

// match builds the expressions for interface and address matches; ok is
// false for a rule that can never match ("!0.0.0.0/0").
func match(in, out, src, dst string) (exprs []expr.Any, ok bool, err error) {
	for _, x := range []struct {
		name string
		key  expr.MetaKey
	}{{in, expr.MetaKeyIIFNAME}, {out, expr.MetaKeyOIFNAME}} {
		if x.name == "" {
			continue
		}
		if len(x.name) > 15 {
			return nil, false, fmt.Errorf("interface name %q longer than 15", x.name)
		}
		name := make([]byte, 16)
		copy(name, x.name)
		exprs = append(exprs, &expr.Meta{Key: x.key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name})
	}
	for _, x := range []struct {
		cidr   string
		offset uint32
	}{{src, 12}, {dst, 16}} {
		if x.cidr == "" {
			continue
		}
		not := x.cidr[0] == '!'
		s := x.cidr
		if not {
			s = s[1:]
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil || !pr.Addr().Is4() {
			return nil, false, fmt.Errorf("bad CIDR %q", x.cidr)
		}
		if pr.Bits() == 0 {
			if not {
				return nil, false, nil
			}
			continue
		}
		op := expr.CmpOpEq
		if not {
			op = expr.CmpOpNeq
		}
		net := pr.Masked().Addr().As4()
		exprs = append(exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: x.offset, Len: 4})
		if pr.Bits() < 32 {
			mask := ^uint32(0) << (32 - pr.Bits())
			exprs = append(exprs, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.BigEndian.PutUint32(mask), Xor: make([]byte, 4)})
		}
		exprs = append(exprs, &expr.Cmp{Op: op, Register: 1, Data: net[:]})
	}
	return exprs, true, nil
}

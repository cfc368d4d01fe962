package policy

import (
	"context"
	"time"
)

// Boot is nodeinit's policy step: it applies env.Node's policy, logs how
// that went and reads the result back (Report). A failing part is
// logged; the node still boots.
func Boot(ctx context.Context, env Env) {
	if env.Log == nil {
		env.Log = func(string, ...any) {}
	}
	start := time.Now()
	if err := Apply(ctx, env); err != nil {
		env.Log("nodeinit: policy: applied with errors in %v (booting anyway): %v", time.Since(start).Round(time.Millisecond), err)
	} else {
		env.Log("nodeinit: policy: applied for %s (role %s) in %v", env.Node.Name, env.Node.Role, time.Since(start).Round(time.Millisecond))
	}
	if bad := Report(env); bad > 0 {
		env.Log("nodeinit: policy: %d parts differ from the plan", bad)
	}
}

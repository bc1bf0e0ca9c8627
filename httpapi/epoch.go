package httpapi

// epochHeader returns the X-Mailbox-Epoch header value (Z9) for the
// engine's epoch, built once per epoch rather than per answer: the engine
// may name a new one while running (a shared store that lost its data),
// so it is asked each time, and the slice is rebuilt only when it differs.
func (a *api) epochHeader() []string {
	e := a.mb.Epoch()
	if hv := a.epoch.Load(); hv != nil && (*hv)[0] == e {
		return *hv
	}
	hv := []string{e}
	a.epoch.Store(&hv)
	return hv
}

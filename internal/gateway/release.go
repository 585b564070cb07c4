package gateway

// releaseBody drops the exchange's references to the client's body (and
// its parsed views) once a stream's attempts are over, so that an open
// stream does not keep a large prompt for its whole life: the cache key,
// the admission's estimate, guardrails and RAG rewrites, telemetry's
// request attributes and every attempt have read it by then. A request
// that started hedges keeps it: a losing attempt may still be reading it
// on its own goroutine.
func releaseBody(x *Exchange, reply *Reply) {
	if reply == nil || reply.Stream == nil || x.Info.Hedges > 0 {
		return
	}
	x.Req.OpenAI.ReleaseBody()
	x.Req.Native = nil
}

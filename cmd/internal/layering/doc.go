// Package layering holds no code, only a test: it keeps the module's
// dependencies pointing one way (STYLE.md rule 3):
//
//	cmd → conf, httpapi, supervisor, actor
//	httpapi → actor (the engine's types and errors; never the engine)
//	supervisor → actor
//	actor, conf → no package of ours
//
// The test parses the imports of every non-test .go file in the module and
// fails on any import of one of our packages that is not such an edge, so
// a reverse edge breaks the build before it can grow roots.
package layering

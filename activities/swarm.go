package activities

// Swarm holds the activities of the SwarmInit and SwarmNodes procedures.
type Swarm struct{ pool *Pool }

// NewSwarm returns the swarm activities, working through pool.
func NewSwarm(pool *Pool) *Swarm { return &Swarm{pool: pool} }

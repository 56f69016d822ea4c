package activities

// Consul holds the activities of the ConsulBootstrap procedure. TODO(consul).
type Consul struct{ pool *Pool }

// NewConsul returns the Consul activities, working through pool.
func NewConsul(pool *Pool) *Consul { return &Consul{pool: pool} }

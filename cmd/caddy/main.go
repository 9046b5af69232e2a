// Command caddy is Caddy with the standard modules and jwtguard, the same
// program xcaddy generates for `xcaddy build --with github.com/jwtguard/caddy-jwtguard`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/jwtguard/caddy-jwtguard"
)

func main() {
	caddycmd.Main()
}

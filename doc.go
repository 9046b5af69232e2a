// Package jwtguard is a Caddy v2 plugin that guards routes with JSON Web Tokens.
package jwtguard

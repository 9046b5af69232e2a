package verifier

import _ "github.com/golang-jwt/jwt/v5"

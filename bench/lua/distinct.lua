-- wrk script for the distinct workload: every request carries the next
-- token of a file minted beforehand, so no token is sent twice in a run.
--
--   wrk ... -s distinct.lua URL -- TOKEN_FILE THREADS [HEADER]
--
-- Each line goes in `Authorization: Bearer <line>`; with HEADER, in
-- `HEADER: <line>` instead, beside wrk's own headers (for es256-dpop, the
-- file holds DPoP proofs, one per request, and wrk's -H sends
-- `Authorization: DPoP <token>`).
--
-- Thread k of n (ids from setup, 1-based) sends lines k, k+n, k+2n, ... of
-- the file. A thread that runs out of tokens does not repeat one: it counts
-- the shortfall (reported as exhausted=) and stops, and bench/run.sh mints
-- more and runs the configuration again.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local tokens = {}
local head, tail
used, available, exhausted = 0, 0, 0

function init(args)
   local file, n, header = args[1], tonumber(args[2] or "1"), args[3]
   local k = id or 1
   local f = assert(io.open(file, "r"))
   local line = 0
   for tok in f:lines() do
      if line % n == k - 1 and tok ~= "" then
         tokens[#tokens + 1] = tok
      end
      line = line + 1
   end
   f:close()
   available = #tokens
   -- The request as wrk would format it, split where the token goes. Given
   -- headers, wrk.format sends only those (and Host): wrk's own, from -H
   -- (the User-Agent), are copied in.
   local headers = {}
   for k, v in pairs(wrk.headers) do
      headers[k] = v
   end
   if header then
      headers[header] = "\1"
   else
      headers["Authorization"] = "Bearer \1"
   end
   local req = wrk.format(nil, nil, headers)
   head, tail = req:match("^(.-)\1(.*)$")
   assert(head, "could not place the token in the request")
end

function request()
   if used >= available then
      exhausted = exhausted + 1
      wrk.thread:stop()
      -- wrk needs a request to send; the thread stops before the next.
      return head .. tokens[available] .. tail
   end
   used = used + 1
   return head .. tokens[used] .. tail
end

-- wrk script: activate+outcome pairs against a pagonode node serving the example configuration
-- with its simulated EC (the demo), independent of pagonode's own load generator.
--
-- Each request is either an activatePaymentNotice on a fresh notice of the simulated EC's
-- Comune (77777777777, notices 30201…: one transfer, payable) or the sendPaymentOutcome OK for a
-- token an earlier activation got, with the requests and credentials `pagonode loadgen` sends.
-- wrk's Lua API does not say which connection a request goes on: each thread keeps the tokens
-- its activations got in a queue, and a connection that can send sends the oldest waiting
-- outcome, else a new activation. So every activation is followed by its outcome at once, on
-- the thread's next free connection, and the load is the loadgen's: pairs, `-c` requests in
-- flight.
--
--   wrk -t2 -c32 -d30s --latency -s tools/wrk/pairs.lua http://127.0.0.1:8080/node-for-psp/v1
--
-- The summary at the end: pairs/s (outcomes answered OK), requests that were not OK, and
-- wrk's per-request latency (activations and outcomes together).

local threads = {}
local next_index = 0

function setup(thread)
   thread:set("index", next_index)
   next_index = next_index + 1
   table.insert(threads, thread)
end

local digits = "0123456789abcdefghijklmnopqrstuvwxyz"

-- `v` in base 36, `width` digits.
local function base36(v, width)
   local out = {}
   for i = width, 1, -1 do
      local d = v % 36
      out[i] = digits:sub(d + 1, d + 1)
      v = (v - d) / 36
   end
   return table.concat(out)
end

local head = '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
   .. ' xmlns:nfp="http://pagopa-api.pagopa.gov.it/node/nodeForPsp.xsd"><soapenv:Body>'
local psp = "<idPSP>60000000001</idPSP><idBrokerPSP>60000000001</idBrokerPSP>"
   .. "<idChannel>60000000001_01</idChannel><password>pwdpwdpwd</password>"
local tail = "</soapenv:Body></soapenv:Envelope>"

-- The tokens waiting for their outcome, oldest first: waiting[first..last].
local run, count, waiting, first, last = 0, 0, {}, 1, 0
-- Read by done() through thread:get, hence global.
pairs_ok, failed, activations = 0, 0, 0

-- A fresh idempotency key: `[a-zA-Z0-9]{10}` after the PSP, unique to the run and thread.
local function fresh_key()
   count = count + 1
   return base36(run % 46656, 3) .. base36(index % 36, 1) .. base36(count, 6)
end

function init(args)
   -- The run (seconds since the epoch) and the thread make notices and keys unique on a node
   -- that keeps its database between runs.
   run = os.time()
end

function request()
   local today = os.date("!%Y-%m-%d")
   if first <= last then
      local w = waiting[first]
      waiting[first] = nil
      first = first + 1
      return wrk.format("POST", nil, {
         ["Content-Type"] = "text/xml; charset=utf-8",
         ["SOAPAction"] = "sendPaymentOutcome",
      }, head .. "<nfp:sendPaymentOutcomeReq>" .. psp
         .. "<idempotencyKey>60000000001_" .. w.key .. "</idempotencyKey>"
         .. "<paymentToken>" .. w.token .. "</paymentToken><outcome>OK</outcome>"
         .. "<details><paymentMethod>creditCard</paymentMethod><paymentChannel>app</paymentChannel>"
         .. "<fee>1.00</fee><applicationDate>" .. today .. "</applicationDate>"
         .. "<transferDate>" .. today .. "</transferDate></details>"
         .. "</nfp:sendPaymentOutcomeReq>" .. tail)
   end
   local key = fresh_key()
   local n = string.format("30201%05d%d%07d", run % 100000, index % 10, count % 10000000)
   return wrk.format("POST", nil, {
      ["Content-Type"] = "text/xml; charset=utf-8",
      ["SOAPAction"] = "activatePaymentNotice",
   }, head .. "<nfp:activatePaymentNoticeReq>" .. psp
      .. "<idempotencyKey>60000000001_" .. key .. "</idempotencyKey>"
      .. "<qrCode><fiscalCode>77777777777</fiscalCode><noticeNumber>" .. n .. "</noticeNumber></qrCode>"
      .. "<amount>10.00</amount></nfp:activatePaymentNoticeReq>" .. tail)
end

function response(status, headers, body)
   local ok = status == 200 and body:find("<outcome>OK</outcome>", 1, true)
   if not ok then
      failed = failed + 1
      if failed <= 3 then
         io.stderr:write("not OK (HTTP " .. status .. "): " .. body:sub(1, 600) .. "\n")
      end
      return
   end
   if body:find("activatePaymentNoticeRes", 1, true) then
      activations = activations + 1
      -- The outcome's idempotency key is a fresh one: the activation's is not in its answer,
      -- and a key is scoped to its operation, so the loadgen's reuse of it changes nothing.
      last = last + 1
      waiting[last] = {
         token = body:match("<paymentToken>([^<]+)</paymentToken>"),
         key = fresh_key(),
      }
   elseif body:find("sendPaymentOutcomeRes", 1, true) then
      pairs_ok = pairs_ok + 1
   end
end

function done(summary, latency, requests)
   local ok, bad, act = 0, 0, 0
   for _, t in ipairs(threads) do
      ok = ok + t:get("pairs_ok")
      bad = bad + t:get("failed")
      act = act + t:get("activations")
   end
   local secs = summary.duration / 1e6
   io.write(string.format("pairs: %d outcomes OK in %.1f s: %.0f pairs/s (%d activations OK, %d answers not OK)\n",
      ok, secs, ok / secs, act, bad))
   io.write(string.format("request latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000))
   if bad > 0 then
      os.exit(1)
   end
end

-- wrk script: POST /internal/messages with a fresh message id per request, spread over 500
-- students (as a busy course would), with the internal token. With BENCH_BATCH=N (N > 1) it
-- posts N such messages per request to /internal/messages/batch, as the receiver does for
-- one long-poll.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("LESSONBOT_INTERNAL_TOKEN")
  run_tag = os.getenv("BENCH_RUN_TAG") or "run"
  batch = tonumber(os.getenv("BENCH_BATCH") or "1")
end

local function message()
  counter = counter + 1
  return string.format(
    '{"message_id": "bench:%s:%d:%d", "sender_email": "student%d@bench.example", "sender_full_name": "Bench Student", "content": "help"}',
    run_tag, thread_id, counter, (counter * 7 + thread_id) % 500)
end

function request()
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  if batch <= 1 then
    return wrk.format("POST", "/internal/messages", headers, message())
  end
  local messages = {}
  for i = 1, batch do
    messages[i] = message()
  end
  return wrk.format("POST", "/internal/messages/batch", headers, '{"messages": [' .. table.concat(messages, ", ") .. ']}')
end

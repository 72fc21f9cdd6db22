-- wrk script: POST /internal/messages with a fresh message id per request,
-- spread over 500 students (as a busy course would), with the internal token.
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
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"message_id": "bench:%s:%d:%d", "sender_email": "student%d@bench.example", "sender_full_name": "Bench Student", "content": "help"}',
    run_tag, thread_id, counter, (counter * 7 + thread_id) % 500)
  return wrk.format("POST", "/internal/messages",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

// The start-up summary and its errors show the operator's node URL without a user or password written into it.
import t from "tap";
import { withoutCredentials } from "../../src/app.ts";

t.test("a node URL is shown without credentials", async (t) => {
  t.equal(withoutCredentials("http://engine:s3cret@10.0.0.5:8332/"), "http://10.0.0.5:8332/");
  t.equal(withoutCredentials("http://10.0.0.5:8332"), "http://10.0.0.5:8332/");
  t.equal(withoutCredentials("not a url"), "not a url");
});

use super::*;
#[test]
fn explore() {
    for text in [
        "[routes.\"$connect\"]\nintegration = \"a\"\nfoo = 1\n",
        "[routes.\"$connect\"]\nroute_response = true\n",
        "[integrations.a]\ntype = \"htp\"\n",
        "[integrations.a]\nuri = \"x\"\n",
        "[integrations.a]\ntype = \"mock\"\nheaders = { a = 1 }\n",
        "[integrations.a]\ntype = \"mock\"\n[integrations.b]\ntype = \"mock\"\n\n[integrations.a.request_parameters]\n\"x.y\" = 5\n",
        "routes.b = { integration = 'x', x = 1 }\n",
        "[limits]\nidle_timeout = \"1x\"\nframe_bytes = 0\nmessage_bytes=10\n[routes.'$foo']\nintegration='nope'\nroute_response=true\n[routes.'$connect']\nintegration='nope'\nroute_response=true\n[integrations.z]\ntype='mock'\nstatus_code=700\nheaders={'a b'='x'}\nuri='http://x'\n",
    ] {
        match Config::from_toml(text, "t.toml") {
            Ok(_) => println!("OK"),
            Err(e) => println!("{e}\n"),
        }
    }
}

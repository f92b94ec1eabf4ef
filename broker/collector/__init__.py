"""The collector: MQTT in (persistent session, manual ack), InfluxDB out, in batches.

One module per job. `service` holds the loop and the one function that carries a batch's
result out in the order the guarantees need (store, commit the chain, publish, acknowledge);
`session` is the only paho user; `intake` batches and budgets; `storage` writes InfluxDB or
the spool; `pictures` reassembles evidence durably; `settle` turns outcomes into what to
store; `asks` plans resend and evidence requests; `alerting` bridges to the alert engine.
"""
